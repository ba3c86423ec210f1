"""Quizzes with spaced repetition: the bank, sessions, FSRS reviews, generated questions.

Core only: no `discord` import here; adapters (terminal, Discord views) call these functions.
"""

from .bank import DIFFICULTIES, TOPICS, Bank, BankError, Question, default_bank, load_bank

__all__ = ["DIFFICULTIES", "TOPICS", "Bank", "BankError", "Question", "default_bank", "load_bank"]
