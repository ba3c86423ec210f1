"""`summarize_url`: fetch one web page safely, extract its main text, summarise it.

Network policy (SSRF): only http(s); every hop (the first URL and each redirect, followed by
hand, at most 5) is resolved first and refused when any address is loopback, private,
link-local, CGNAT, multicast, reserved or a cloud metadata address, unless the URL's host is
named in URL_ALLOWLIST. The connection then goes to the address that was checked (the Host
header and TLS SNI keep the name), so a second DNS answer cannot swap in another address.
The resolver and the HTTP transport are injectable: tests assert refusals before any socket.
Limits: a size cap on the body (read in a stream), an overall time limit, text/HTML only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .registry import ToolError

if TYPE_CHECKING:
    import httpx  # imported when a page is fetched: chat start-up does not pay for it

Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_BYTES = 2_000_000
TIME_LIMIT_S = 15.0
MAX_REDIRECTS = 5
USER_AGENT = "studybot/0.1 (study assistant; summarize_url)"
TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown")

# names and addresses that are metadata services whatever the rest of the policy says
METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
METADATA_IPS = {ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200",
                                                   "fd00:ec2::254", "168.63.129.16")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UrlRefused(ToolError):
    """The URL is not allowed by the network policy (decided before connecting)."""


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ToolError(f"无法解析域名 {host} / cannot resolve {host}: {e.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why this address may not be fetched, or None when it is a public unicast address."""
    if ip in METADATA_IPS:
        return "metadata"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_problem(embedded)
            if inner:
                return inner
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified or ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:  # CGNAT 100.64/10 and the other special-purpose blocks
        return "not public"
    return None


@dataclass(slots=True)
class FetchPolicy:
    allowlist: set[str] = field(default_factory=set)
    max_bytes: int = MAX_BYTES
    time_limit_s: float = TIME_LIMIT_S
    max_redirects: int = MAX_REDIRECTS
    resolver: Resolver = system_resolver
    transport: httpx.AsyncBaseTransport | None = None  # tests wrap the real one to record connections


@dataclass(slots=True)
class Page:
    url: str  # the final URL, after redirects
    status: int
    content_type: str
    body: bytes
    raw_content_type: str  # the header as sent (with its charset)
    truncated: bool


def _host_of(url: httpx.URL) -> str:
    return (url.host or "").lower().rstrip(".")


async def check_url(url: httpx.URL, policy: FetchPolicy) -> str:
    """Validate one hop and return the IP address to connect to."""
    if url.scheme not in ("http", "https"):
        raise UrlRefused(f"只支持 http/https 链接 / only http and https URLs are allowed (got {url.scheme or '?'})")
    host = _host_of(url)
    if not host:
        raise UrlRefused("链接缺少主机名 / the URL has no host")
    if url.userinfo:
        raise UrlRefused("不支持带用户名密码的链接 / URLs with credentials are not allowed")
    allowed = host in policy.allowlist
    if host in METADATA_HOSTS and not allowed:
        raise UrlRefused(f"拒绝访问元数据地址 {host} / refused: metadata host")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        addresses = await policy.resolver(host, url.port or (443 if url.scheme == "https" else 80))
        if not addresses:
            raise ToolError(f"无法解析域名 {host} / cannot resolve {host}")
    if allowed:  # named in URL_ALLOWLIST: the operator vouches for it, private or not
        return addresses[0].split("%", 1)[0]
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a.split("%", 1)[0])
        except ValueError:
            raise UrlRefused(f"解析结果无效 / the resolver returned an invalid address for {host}") from None
        problem = address_problem(ip)
        if problem:
            # one bad address is enough: a name that also points inside is not a public page
            raise UrlRefused(f"拒绝访问内网或本机地址（{host} → {ip}，{problem}）/ refused: {host} resolves to a "
                             f"{problem} address; add the host to URL_ALLOWLIST to allow it")
    return addresses[0].split("%", 1)[0]


def _pinned(url: httpx.URL, ip: str) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The URL to connect to (the checked address), its Host header and TLS server name."""
    if ip == _host_of(url):
        return url, {}, {}
    netloc_host = f"[{ip}]" if ":" in ip else ip
    host_header = url.netloc.decode("ascii")
    if "@" in host_header:
        host_header = host_header.rsplit("@", 1)[1]
    ext: dict[str, Any] = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return url.copy_with(host=netloc_host.strip("[]")), {"Host": host_header}, ext


async def fetch(url: str, policy: FetchPolicy) -> Page:
    """GET a page within the policy; redirects followed by hand and checked each time."""
    import httpx

    try:
        current = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as e:
        raise UrlRefused(f"链接无效 / invalid URL: {e}") from None
    timeout = httpx.Timeout(min(10.0, policy.time_limit_s), connect=min(5.0, policy.time_limit_s))
    try:
        async with asyncio.timeout(policy.time_limit_s), httpx.AsyncClient(
                transport=policy.transport, trust_env=False, follow_redirects=False, timeout=timeout,
                headers={"User-Agent": USER_AGENT, "Accept": "text/html,text/plain;q=0.9,*/*;q=0.1"}) as client:
            for _hop in range(policy.max_redirects + 1):
                ip = await check_url(current, policy)  # before any socket for this hop
                target, headers, ext = _pinned(current, ip)
                request = client.build_request("GET", target, headers=headers, extensions=ext)
                response = await client.send(request, stream=True)
                try:
                    if response.is_redirect and response.headers.get("location"):
                        try:
                            current = current.join(response.headers["location"])
                        except httpx.InvalidURL as e:
                            raise UrlRefused(f"重定向地址无效 / invalid redirect: {e}") from None
                        continue
                    return await _read(response, str(current), policy.max_bytes)
                finally:
                    await response.aclose()
            raise ToolError(f"重定向次数过多（上限 {policy.max_redirects}）/ more than {policy.max_redirects} redirects")
    except TimeoutError:
        raise ToolError(f"网页加载超时（{policy.time_limit_s:g} 秒）/ the page took longer than "
                        f"{policy.time_limit_s:g} s") from None
    except httpx.HTTPError as e:
        raise ToolError(f"无法获取网页 / cannot fetch the page: {type(e).__name__}") from None


async def _read(response: httpx.Response, url: str, max_bytes: int) -> Page:
    if response.status_code >= 400:
        raise ToolError(f"网页返回错误 {response.status_code} / the page answered HTTP {response.status_code}")
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in TEXT_TYPES:
        raise ToolError(f"不是网页文本（{ctype}）/ not a text page ({ctype})")
    chunks: list[bytes] = []
    size = 0
    truncated = False
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:  # stop reading: the rest is never downloaded
            truncated = True
            break
    body = b"".join(chunks)[:max_bytes]
    return Page(url, response.status_code, ctype or "text/html", body, response.headers.get("content-type", "").lower(),
                truncated)


# --- text ---------------------------------------------------------------------------------------

def decode(page: Page) -> str:
    from jobs.sources.fetch import decode as decode_bytes  # header charset, <meta>, UTF-8, GB18030

    return decode_bytes(page.body, page.raw_content_type)


_DROP = ("script", "style", "noscript", "nav", "header", "footer", "aside", "form", "svg", "iframe", "template")


def _selectolax_extract(html: str) -> tuple[str, str]:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node else ""
    tree.strip_tags(list(_DROP))
    blocks = [n.text(separator=" ", strip=True) for n in tree.css("h1, h2, h3, p, li, pre, blockquote")]
    blocks = [b for b in blocks if b]
    if not blocks and tree.body is not None:
        blocks = [tree.body.text(separator="\n", strip=True)]
    return title, "\n".join(blocks)


def extract_main_text(html: str) -> tuple[str, str]:
    """(title, main text): trafilatura first, selectolax when it finds nothing."""
    title, text = "", ""
    try:
        import json

        import trafilatura

        out = trafilatura.extract(html, output_format="json", with_metadata=True, include_comments=False,
                                  include_tables=False, favor_precision=True)
        if out:
            doc = json.loads(out)
            title, text = doc.get("title") or "", doc.get("text") or ""
    except Exception:  # a crash in the extractor must not lose the page: fall back below
        title, text = "", ""
    if len(text.strip()) < 40:
        t2, x2 = _selectolax_extract(html)
        title = title or t2
        if len(x2.strip()) > len(text.strip()):
            text = x2
    return title.strip(), text.strip()


def lead_summary(text: str, max_chars: int = 300, title: str | None = None) -> str:
    """Extractive: whole sentences of the page (the digest's summariser, which also leaves out
    lines that look like injected instructions), never invented text."""
    from jobs.summarize import summarize

    return summarize(text, max_chars, title=title or None)


async def summarize_url(url: str, policy: FetchPolicy, max_chars: int = 300) -> dict[str, Any]:
    page = await fetch(url, policy)
    html = decode(page)
    if page.content_type in ("text/plain", "text/markdown"):
        title, text = "", html.strip()
    else:
        title, text = await asyncio.to_thread(extract_main_text, html)
    if not text:
        raise ToolError("网页中没有找到正文 / no main text found on the page")
    summary = await asyncio.to_thread(lead_summary, text, max_chars, title)
    return {"url": page.url, "title": title, "summary": summary, "chars": len(text), "truncated": page.truncated}
