"""Prometheus metrics of the serving path (exported at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class Metrics:
    """One registry per server, so tests and several servers in a process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_resident_memory_bytes, process_open_fds, process_cpu_seconds_total: what a soak watches
        ProcessCollector(registry=self.registry)
        self.active_streams = Gauge("callstream_active_streams", "Open streams", registry=self.registry)
        self.sessions = Gauge("callstream_sessions", "Sessions in memory: streaming, or dropped and held for a resume",
                              registry=self.registry)
        self.chunks = Counter("callstream_chunks_processed", "Acoustic chunks processed (per channel)",
                              registry=self.registry)
        self.errors = Counter("callstream_stream_errors", "Streams closed by an error", ["code"],
                              registry=self.registry)
        self.refused = Counter("callstream_refused_handshakes", "WebSocket handshakes refused (origin, auth)",
                               ["reason"], registry=self.registry)
        self.first_partial = Histogram("callstream_time_to_first_partial_seconds",
                                       "Wall time from a stream's first audio to its first partial",
                                       buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.final_latency = Histogram("callstream_time_to_final_seconds",
                                       "Wall time from the audio that ended an utterance to its final",
                                       buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.loop_lag = Histogram("callstream_event_loop_lag_seconds",
                                  "How late the event loop wakes a probe from a short sleep",
                                  buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
                                  registry=self.registry)
        self.recognizer_busy = Gauge("callstream_recognizer_busy_ratio",
                                     "Share of the last load window the recogniser thread spent working",
                                     registry=self.registry)
        self.median_lag = Gauge("callstream_stream_lag_seconds",
                                "Median real-time stream's lag: wall time since its first audio minus the audio taken",
                                registry=self.registry)
        self.shed = Counter("callstream_shed_streams", "Admitted streams ended because the server fell behind",
                            registry=self.registry)
        self.batch_size = Histogram("callstream_acoustic_batch_size", "Channels per acoustic call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.batch_seconds = Histogram("callstream_acoustic_batch_seconds", "Acoustic-model time per batch",
                                       buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.refreshes = Counter("callstream_partial_refreshes",
                                 "Open utterances the second pass decoded again for their partials",
                                 registry=self.registry)
        self.refresh_seconds = Histogram(
            "callstream_partial_refresh_seconds",
            "Wall time of one call of the partials' second pass (a round's refreshes share one)",
            buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.refresh_paused = Counter("callstream_partial_refresh_paused_seconds",
                                      "Seconds the partials' refreshes were paused: the recogniser had no room",
                                      registry=self.registry)

    def observe_refresh(self, utterances: int, seconds: float) -> None:
        self.refreshes.inc(utterances)
        self.refresh_seconds.observe(seconds)

    def observe_batch(self, channels: int, seconds: float) -> None:
        self.batch_size.observe(channels)
        self.batch_seconds.observe(seconds)
        self.chunks.inc(channels)

    def render(self) -> bytes:
        return generate_latest(self.registry)
