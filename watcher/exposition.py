"""``/metrics`` rendering that formats again only the metric families whose samples changed.

An organization is thousands of account-region series, and formatting them is most of a
scrape (prometheus_client formats each sample with its labels escaped, every scrape). Between
two scrapes most families keep every sample (errors by kind, staleness bounds, principals);
the last-success times change at each poll. So each family's text is kept with the samples it
was made from, and reused while a new collection gives equal samples. The text of a family
comes from prometheus_client's own encoder (the one the ``Accept`` header chooses), so the
output is byte for byte what ``generate_latest`` gives.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

OPENMETRICS_END = b"# EOF\n"

_State = tuple[str, str, str, list[Sample]]


class _One(Collector):
    """One family, as a collector: what the encoders take."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


class CachedExposition:
    """Renders ``registry`` for a scrape; keeps the text of the last format asked for."""

    def __init__(self, registry: Collector) -> None:
        self._registry = registry
        self._content_type = ""
        self._texts: dict[str, tuple[_State, bytes]] = {}

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition the ``Accept`` header asks for, and its content type."""
        encoder, content_type = choose_encoder(accept)
        if content_type != self._content_type:  # one format kept: the scraper's
            self._content_type, self._texts = content_type, {}
        openmetrics = content_type.startswith("application/openmetrics-text")
        texts: dict[str, tuple[_State, bytes]] = {}
        for family in self._registry.collect():
            state: _State = (family.type, family.documentation, family.unit, family.samples)
            kept = self._texts.get(family.name)
            if kept is None or kept[0] != state:
                text = encoder(_One(family))
                kept = (state, text.removesuffix(OPENMETRICS_END) if openmetrics else text)
            texts[family.name] = kept
        self._texts = texts  # families gone since are forgotten
        body = b"".join(text for _, text in texts.values())
        return (body + OPENMETRICS_END if openmetrics else body), content_type
