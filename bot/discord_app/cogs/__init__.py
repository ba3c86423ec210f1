"""The cogs of StudyBot, added in this order by `StudyBot.load_cogs`."""

from __future__ import annotations

from .admin import Admin
from .ask import Ask
from .chat import Chat
from .digest import DigestCog
from .models import Models
from .privacy import Privacy
from .quiz import QuizCog
from .roadmap import RoadmapCog
from .text import Text

COGS = (Chat, Ask, Models, Text, DigestCog, QuizCog, RoadmapCog, Admin, Privacy)

__all__ = ["COGS"]
