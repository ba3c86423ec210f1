"""The synthetic-day generator others build on: deterministic, faithful paths, documented knobs."""

from __future__ import annotations

from datetime import date

import httpx

from tests.fixtures.sources.make_day import (
    build_paper,
    hot_search_payload,
    make_hot_topics,
    render_article,
    serve_paper,
)


def test_default_day_shape_and_determinism() -> None:
    a = build_paper(date(2025, 3, 14))
    b = build_paper(date(2025, 3, 14))
    assert render_article(a, a.articles[10]) == render_article(b, b.articles[10])
    assert len(a.pages) == 20 and [p.number for p in a.ad_pages] == [13, 14]
    assert len(a.articles) == 140 and len({x.title for x in a.articles}) == 140
    assert len({x.id for x in a.articles}) == 140
    assert sum(x.is_photo for x in a.articles) == 1
    assert any(x.editor_line for x in a.articles) and any(x.residue for x in a.articles)
    assert a.editor_rows and all("责编" in t for _, t in a.editor_rows)
    for x in a.articles:
        assert all(p.endswith(("。", "摄")) for p in x.paragraphs)
    assert build_paper(date(2025, 3, 14), seed=1).articles[0].title != a.articles[0].title or \
        build_paper(date(2025, 3, 14), seed=1).articles[1].title != a.articles[1].title


def test_paths_follow_the_real_layout() -> None:
    pc = build_paper(date(2024, 12, 25), pages=2, ad_pages=())
    art = pc.articles[0]
    assert pc.layout_path(2) == "/rmrb/pc/layout/202412/25/node_02.html"
    assert pc.path_of(art) == f"/rmrb/pc/content/202412/25/content_{art.id}.html"
    old = build_paper(date(2024, 11, 30), pages=2, ad_pages=())
    o = old.page(2).articles[1]
    assert old.layout_path(2) == "/rmrb/html/2024-11/30/nbs.D110000renmrb_02.htm"
    assert old.path_of(o) == "/rmrb/html/2024-11/30/nw.D110000renmrb_20241130_2-02.htm"


def test_knobs() -> None:
    p = build_paper(date(2025, 1, 6), pages=8, ad_pages=(3,), articles_per_page=5)
    assert [len(pg.articles) for pg in p.pages] == [5, 5, 0, 5, 5, 5, 5, 5]
    q = build_paper(date(2025, 1, 6), pages=6, ad_pages=(), total_articles=25)
    assert len(q.articles) == 25


async def test_serves_several_days_and_failures() -> None:
    d1, d2 = build_paper(date(2025, 3, 13), pages=2, ad_pages=()), build_paper(date(2025, 3, 14), pages=2, ad_pages=())
    bad = d2.articles[0]
    async with serve_paper(d1, d2, fail_article_ids=[bad.id], fail_status=503) as srv:
        async with httpx.AsyncClient() as c:
            assert (await c.get(srv.url + d1.layout_path(1))).status_code == 200
            assert (await c.get(srv.url + d2.path_of(d2.articles[1]))).status_code == 200
            assert (await c.get(srv.url + d2.path_of(bad))).status_code == 503
            assert (await c.get(srv.url + "/rmrb/pc/layout/202503/15/node_01.html")).status_code == 404
    assert len(srv.article_requests()) == 2


def test_hot_payload_layout() -> None:
    specs = make_hot_topics(10)
    payload = hot_search_payload(specs, ads=2, pinned=2)
    rt = payload["data"]["realtime"]
    assert len(rt) == 12 and sum(1 for r in rt if r.get("is_ad")) == 2
    assert [r["rank"] for r in rt if "rank" in r] == list(range(10))
    assert payload["data"]["hotgov"]["word"].startswith("#") and len(payload["data"]["hotgovs"]) == 1
    assert [s.heat for s in specs] == sorted((s.heat for s in specs), reverse=True)
