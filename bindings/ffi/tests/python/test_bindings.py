"""The generated Python bindings against a real PBX and a real phone:
register, call the extension where baresip answers by itself, see the call
connect, hang up, see it end, find it in the history and call back, shut
down; call again with the audio fed by the "shell" (an AudioDevice pushed
and pulled at a device's pace) and hear baresip's tone through it; then
take a call from baresip, answered from inside the listener, until baresip
hangs up.

Run by tests/e2e_bindings.rs, which generates the bindings next to the
library (a directory on PYTHONPATH), starts the PBX and baresip and passes
them in the environment: TSUNAGU_SERVER (HOST:PORT, UDP), TSUNAGU_USER and
TSUNAGU_PASSWORD (who this test registers as), TSUNAGU_CALLEE (where baresip
answers) and TSUNAGU_TMP (a scratch directory).
"""

import math
import os
import queue
import threading
import time

import pytest

import tsunagu_ffi as t


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set")
    return value


class Events:
    """Collects events from the SDK's event thread for the test."""

    def __init__(self):
        self.queue = queue.Queue()

    def on_event(self, event):
        print("event:", event)
        self.queue.put(event)

    def wait(self, what, seconds, pick):
        """The first event `pick` accepts within `seconds`; others are skipped."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {what} within {seconds} s")
            try:
                ev = self.queue.get(timeout=left)
            except queue.Empty:
                pytest.fail(f"no {what} within {seconds} s")
            got = pick(ev)
            if got is not None:
                return got


@pytest.fixture
def phone():
    p = t.Phone()
    yield p
    p.shutdown()


def account_config():
    return t.AccountConfig(
        server=env("TSUNAGU_SERVER"),
        transport=t.Transport.UDP(),
        user=env("TSUNAGU_USER"),
        password=env("TSUNAGU_PASSWORD"),
        domain="",
        pn_provider=None,
        pn_prid=None,
        pn_param=None,
    )


def wait_registered(events, account):
    def registration(ev):
        if isinstance(ev, t.PhoneEvent.REGISTRATION_CHANGED) and ev.account_id == account.id():
            if isinstance(ev.state, t.RegistrationState.FAILED):
                pytest.fail(f"registration failed: {ev.state.code} {ev.state.reason}")
            if isinstance(ev.state, t.RegistrationState.REGISTERED):
                return ev.state
        return None

    registered = events.wait("registration", 15, registration)
    assert registered.expires_secs > 0
    assert isinstance(account.state(), t.RegistrationState.REGISTERED)


def wait_call_state(events, call_id, what, seconds, state_type):
    def pick(ev):
        if isinstance(ev, t.PhoneEvent.MEDIA_FAILED):
            pytest.fail(f"media failed: {ev.reason}")
        if isinstance(ev, t.PhoneEvent.CALL_CHANGED) and ev.call_id == call_id:
            if isinstance(ev.state, state_type):
                return ev.state
            if isinstance(ev.state, t.CallState.ENDED):
                pytest.fail(f"the call ended before {what}: {ev.state.code} {ev.state.reason}")
        return None

    return events.wait(what, seconds, pick)


def wait_ended(events, call_id, what="end of the call"):
    """The state a call ended with."""
    return events.wait(
        what,
        10,
        lambda ev: ev.state
        if isinstance(ev, t.PhoneEvent.CALL_CHANGED) and ev.call_id == call_id and isinstance(ev.state, t.CallState.ENDED)
        else None,
    )


def shut_down(events, account):
    account.shutdown()
    events.wait(
        "unregistration",
        10,
        lambda ev: ev
        if isinstance(ev, t.PhoneEvent.REGISTRATION_CHANGED) and isinstance(ev.state, t.RegistrationState.UNREGISTERED)
        else None,
    )


def test_register_call_hang_up(phone):
    events = Events()
    phone.set_listener(events)
    history_file = os.path.join(env("TSUNAGU_TMP"), "history.jsonl")
    assert phone.enable_history(history_file) == 0
    account = phone.add_account(account_config())
    wait_registered(events, account)

    # Errors arrive as typed exceptions.
    with pytest.raises(t.PhoneError.InvalidArgument):
        account.dial("", t.AudioSpec.SILENT())
    with pytest.raises(t.PhoneError.Audio):
        account.dial(env("TSUNAGU_CALLEE"), t.AudioSpec.FILES(play_wav="/nonexistent/x.wav", record_wav=None))

    record = os.path.join(env("TSUNAGU_TMP"), "python-heard.wav")
    call = account.dial(env("TSUNAGU_CALLEE"), t.AudioSpec.FILES(play_wav=None, record_wav=record))
    assert call.id()
    assert not call.is_incoming()
    assert os.path.exists(record), "the recording file is made when the call is placed"
    wait_call_state(events, call.id(), "connected", 20, t.CallState.CONNECTED)
    with pytest.raises(t.PhoneError.InvalidArgument):
        call.reject(486)  # an outgoing call is hung up, not rejected
    call.hangup()
    ended = wait_ended(events, call.id())
    assert ended.code == 200, ended
    # The finished call is in the history, saved, and can be called back.
    events.wait("history update", 10, lambda ev: ev if isinstance(ev, t.PhoneEvent.HISTORY_CHANGED) else None)
    history = phone.history()
    assert [h.call_id for h in history] == [call.id()], history
    assert history[0].outcome == "answered" and not history[0].incoming, history[0]
    assert history[0].number == env("TSUNAGU_CALLEE"), history[0]
    with open(history_file) as f:
        assert call.id() in f.read()
    with pytest.raises(t.PhoneError.InvalidArgument):
        account.redial("no-such-call", t.AudioSpec.SILENT())
    again = account.redial(call.id(), t.AudioSpec.SILENT())
    wait_call_state(events, again.id(), "connected again", 20, t.CallState.CONNECTED)
    again.hangup()
    wait_ended(events, again.id(), "end of the second call")
    shut_down(events, account)


def tone_power(samples, rate, freq):
    """Goertzel power of `freq` in `samples`, as the mean square of a sine."""
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    n = max(len(samples), 1)
    return max(s1 * s1 + s2 * s2 - coeff * s1 * s2, 0.0) * 2 / (n * n)


def test_call_with_the_shells_own_audio_device(phone):
    """The path a phone app uses: its audio callback pushes what the
    microphone captured and pulls what to play (16 kHz, 20 ms here); the
    far end's 1000 Hz tone comes out of the device."""
    events = Events()
    phone.set_listener(events)
    account = phone.add_account(account_config())
    wait_registered(events, account)
    device = t.AudioDevice(16000, 320)
    with pytest.raises(t.PhoneError.InvalidArgument):
        t.AudioDevice(7, 0)
    played = []
    stop = threading.Event()

    def audio_callback():
        # Paced like a device: one 20 ms frame in, one out, per 20 ms.
        phase = 0
        next_at = time.monotonic()
        while not stop.is_set():
            frame = [int(8000 * math.sin(2 * math.pi * 440 * (phase + i) / 16000)) for i in range(320)]
            phase += 320
            device.push_capture(frame)
            played.extend(device.pull_playout(320))
            next_at += 0.02
            time.sleep(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=audio_callback, daemon=True)
    thread.start()
    try:
        call = account.dial(env("TSUNAGU_CALLEE"), t.AudioSpec.DEVICE(device=device))
        wait_call_state(events, call.id(), "connected", 20, t.CallState.CONNECTED)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and tone_power(played[-16000:], 16000, 1000) < 1e5:
            time.sleep(0.1)
        assert device.in_call()
        tail = played[-16000:]
        assert tone_power(tail, 16000, 1000) > 1e5, "the far end's tone comes out of the device"
        assert tone_power(tail, 16000, 1000) > 10 * tone_power(tail, 16000, 440), "and not our own"
        call.hangup()
        wait_ended(events, call.id())
    finally:
        stop.set()
        thread.join(timeout=5)
    deadline = time.monotonic() + 5
    while device.in_call() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not device.in_call(), "the call's end releases the device"
    shut_down(events, account)


def test_incoming_call_answered_from_the_listener(phone):
    """baresip calls us once this prints READY-FOR-CALL, and hangs up once
    it prints CONNECTED-INCOMING (tests/e2e_bindings.rs does both)."""
    holder = {}
    answered = queue.Queue()

    class Answering(Events):
        def on_event(self, ev):
            if isinstance(ev, t.PhoneEvent.INCOMING_CALL):
                # Answered on the SDK's event thread, as an app would: the
                # façade must take a call from inside its own callback.
                try:
                    holder["account"].answer(ev.call.id(), t.AudioSpec.SILENT())
                    answered.put(None)
                except Exception as e:  # reported by the test thread
                    answered.put(e)
            super().on_event(ev)

    events = Answering()
    phone.set_listener(events)
    account = phone.add_account(account_config())
    holder["account"] = account
    wait_registered(events, account)
    print("READY-FOR-CALL", flush=True)

    incoming = events.wait("incoming call", 30, lambda ev: ev if isinstance(ev, t.PhoneEvent.INCOMING_CALL) else None)
    assert incoming.account_id == account.id()
    assert incoming.caller == env("TSUNAGU_CALLEE")
    assert incoming.call.is_incoming()
    assert answered.get(timeout=5) is None
    wait_call_state(events, incoming.call.id(), "connected", 20, t.CallState.CONNECTED)
    with pytest.raises(t.PhoneError.InvalidArgument):
        incoming.call.reject(486)  # answered already
    print("CONNECTED-INCOMING", flush=True)

    ended = events.wait(
        "the caller's hangup",
        20,
        lambda ev: ev.state
        if isinstance(ev, t.PhoneEvent.CALL_CHANGED) and ev.call_id == incoming.call.id() and isinstance(ev.state, t.CallState.ENDED)
        else None,
    )
    assert ended.code == 200, ended
    shut_down(events, account)
