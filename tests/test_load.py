"""Measured admission and load shedding (stream.load), on made-up clocks."""

from stream.load import LoadConfig, LoadMonitor


class _Machine:
    """Real-time streams on a recogniser that decodes ``capacity`` of them in real time. Each
    stream gets an equal share; a stream behind catches up with what the others leave over."""

    def __init__(self, monitor, streams, capacity, *, busy=None, rate=None):
        self.monitor, self.capacity = monitor, capacity
        self.lags = {s: 0.0 for s in streams}
        self.busy_s, self.t, self.shed = 0.0, 0.0, []
        self.busy, self.rate = busy, rate  # fixed figures instead of the capacity's

    def run(self, seconds, step=0.5):
        end = self.t + seconds
        while self.t < end:
            self.t += step
            n = len(self.lags)
            share = self.rate if self.rate is not None else self.capacity / max(n, 1)
            for s, lag in self.lags.items():
                self.lags[s] = max(0.0, lag + step * (1.0 - share)) if share <= 1 else max(0.0, lag - step * (share - 1))
                if self.rate is not None:
                    self.lags[s] = lag + step * (1.0 - share)
            self.busy_s += step * (self.busy if self.busy is not None else min(1.0, n / self.capacity))
            self.monitor.observe(self.t, self.busy_s, self.lags)
            for sid in self.monitor.to_shed(self.t):
                self.shed.append(sid)
                del self.lags[sid]
        return self


def test_a_recogniser_that_keeps_up_refuses_and_sheds_nothing():
    monitor = LoadMonitor(LoadConfig())
    machine = _Machine(monitor, [f"s{i}" for i in range(36)], capacity=38).run(60)
    assert machine.shed == [] and not monitor.behind(machine.t)
    assert monitor.busy_share > 0.9


def test_late_clients_on_an_idle_recogniser_are_not_the_servers_fault():
    """Clients that pause (lag grows) while the recogniser has time: nothing refused or shed."""
    monitor = LoadMonitor(LoadConfig())
    machine = _Machine(monitor, [f"s{i}" for i in range(10)], capacity=30, busy=0.3, rate=0.5).run(30)
    assert machine.shed == [] and not monitor.behind(machine.t)


def test_faster_than_real_time_clients_on_a_busy_recogniser_are_not_behind():
    """File uploads keep the recogniser busy with negative lag: nothing refused or shed."""
    monitor = LoadMonitor(LoadConfig())
    machine = _Machine(monitor, ["upload-1", "upload-2"], capacity=6, busy=1.0, rate=3.0).run(30)
    assert machine.shed == [] and not monitor.behind(machine.t)


def test_a_saturated_recogniser_that_falls_behind_refuses_new_streams_then_sheds_the_newest():
    monitor = LoadMonitor(LoadConfig(max_lag_s=1.0, window_s=5.0))
    # 36 streams on a machine that now decodes about 32 of them in real time.
    machine = _Machine(monitor, [f"s{i}" for i in range(36)], capacity=32.4)
    machine.run(2.5)
    assert not monitor.behind(machine.t)  # half a window: not measured yet
    machine.run(2.5)
    assert monitor.behind(machine.t)  # falling behind: no new stream, though no one is 1 s late yet
    assert machine.shed == []
    machine.run(5.5)
    # A tenth of real time lost a second: a tenth of the streams, the newest.
    assert machine.shed == ["s35", "s34", "s33", "s32"]
    assert monitor.behind(machine.t)  # the load after shedding is not measured yet: still refusing
    # The rest catch up: no more shedding, refused while late, welcome again once on time.
    machine.run(4.0)
    assert monitor.behind(machine.t) and machine.shed == ["s35", "s34", "s33", "s32"]
    machine.run(30)
    assert machine.shed == ["s35", "s34", "s33", "s32"] and not monitor.behind(machine.t)


def test_far_past_capacity_it_sheds_in_steps_down_to_what_keeps_up():
    monitor = LoadMonitor(LoadConfig(max_lag_s=1.0, window_s=5.0))
    machine = _Machine(monitor, [f"s{i}" for i in range(36)], capacity=18).run(60)
    assert machine.shed == [f"s{i}" for i in range(35, 35 - len(machine.shed), -1)]
    assert 36 - len(machine.shed) == 17  # 18 would keep up but never catch up
    assert not monitor.behind(machine.t) and max(machine.lags.values()) == 0.0


def test_at_most_half_the_streams_go_at_once():
    monitor = LoadMonitor(LoadConfig(max_lag_s=1.0, window_s=5.0))
    machine = _Machine(monitor, [f"s{i}" for i in range(10)], capacity=0.5).run(8)  # the machine nearly stopped
    assert machine.shed == ["s9", "s8", "s7", "s6", "s5"]


def test_zero_max_lag_turns_it_off():
    monitor = LoadMonitor(LoadConfig(max_lag_s=0.0))
    machine = _Machine(monitor, [f"s{i}" for i in range(10)], capacity=5).run(30)
    assert machine.shed == [] and not monitor.behind(machine.t)


def test_optional_work_runs_only_while_the_recogniser_has_room():
    idle, saturated = LoadMonitor(LoadConfig()), LoadMonitor(LoadConfig())
    _Machine(idle, [f"s{i}" for i in range(10)], capacity=30, busy=0.3).run(10)
    _Machine(saturated, [f"s{i}" for i in range(36)], capacity=38).run(10)
    assert idle.has_room() and not saturated.has_room()
