"""``/metrics`` rendering that formats again only the samples that changed.

An organization is thousands of account-region series, and formatting them was most of a
scrape (prometheus_client formats each sample with its labels escaped, every scrape). Between
two scrapes most samples are unchanged (staleness bounds, principals, most error counters);
the last-success times change at each poll. So each family's text is kept, line by line, with
the samples it was made from: an equal family is reused whole, and a family whose samples kept
their names and labels has only its changed samples formatted again, in place. Every line comes
from prometheus_client's own encoder (the one the ``Accept`` header chooses), so the output is
byte for byte what ``generate_latest`` gives; a family whose text is not one line per sample
(e.g. with ``_created`` series) is always formatted whole.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

OPENMETRICS_END = b"# EOF\n"

Encoder = Callable[[Collector], bytes]


class _One(Collector):
    """One family, as a collector: what the encoders take."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


@dataclass(slots=True)
class _Text:
    """A family's text: ``head`` then one line per sample, or (``lines`` None) ``head`` whole."""

    meta: tuple[str, str, str]
    samples: list[Sample]
    head: bytes
    lines: list[bytes] | None


class CachedExposition:
    """Renders ``registry`` for a scrape; keeps the text of the last format asked for."""

    def __init__(self, registry: Collector) -> None:
        self._registry = registry
        self._content_type = ""
        self._texts: dict[str, _Text] = {}

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition the ``Accept`` header asks for, and its content type."""
        encoder, content_type = choose_encoder(accept)
        if content_type != self._content_type:  # one format kept: the scraper's
            self._content_type, self._texts = content_type, {}
        end = OPENMETRICS_END if content_type.startswith("application/openmetrics") else b""
        texts: dict[str, _Text] = {}
        for family in self._registry.collect():
            texts[family.name] = self._text(family, self._texts.get(family.name), encoder, end)
        self._texts = texts  # families gone since are forgotten
        body = b"".join(t.head + b"".join(t.lines or ()) for t in texts.values())
        return body + end, content_type

    def _text(self, family: Metric, kept: _Text | None, encoder: Encoder, end: bytes) -> _Text:
        meta = (family.type, family.documentation, family.unit)
        samples: list[Sample] = family.samples
        if kept is None or kept.meta != meta or kept.lines is None:
            return _format(family, encoder, end)
        if kept.samples == samples:
            return kept
        changed = _changed(kept.samples, samples)
        if changed is None:
            return _format(family, encoder, end)
        part = copy.copy(family)
        part.samples = [samples[i] for i in changed]
        redone = _format(part, encoder, end)
        if redone.lines is None or redone.head != kept.head:
            return _format(family, encoder, end)
        lines = list(kept.lines)
        for i, line in zip(changed, redone.lines, strict=True):
            lines[i] = line
        return _Text(meta, samples, kept.head, lines)


def _changed(before: Sequence[Sample], after: Sequence[Sample]) -> list[int] | None:
    """Indexes of the samples whose values changed; None when a series came, went or moved."""
    if len(before) != len(after):
        return None
    changed = []
    for i, (old, new) in enumerate(zip(before, after, strict=True)):
        if old != new:
            if old.name != new.name or old.labels != new.labels:
                return None
            changed.append(i)
    return changed


def _format(family: Metric, encoder: Encoder, end: bytes) -> _Text:
    """Format ``family`` with prometheus_client's encoder; split in lines when its text is the
    header, then one line per sample in order."""
    text = encoder(_One(family)).removesuffix(end) if end else encoder(_One(family))
    meta = (family.type, family.documentation, family.unit)
    lines = text.splitlines(keepends=True)
    head = [line for line in lines if line.startswith(b"#")]
    body = lines[len(head) :]
    if lines[: len(head)] != head or len(body) != len(family.samples):
        return _Text(meta, family.samples, text, None)
    return _Text(meta, family.samples, b"".join(head), body)
