// The generated Kotlin bindings on the JVM, against a real PBX and a real
// phone: register, call the extension where baresip answers by itself, see
// the call connect, hang up, see it end, close. Run by tests/e2e_bindings.rs,
// which starts the PBX and baresip and passes them in the environment:
//   TSUNAGU_SERVER   HOST:PORT of the PBX (UDP)
//   TSUNAGU_USER / TSUNAGU_PASSWORD   the extension this program registers as
//   TSUNAGU_CALLEE   the extension baresip answers on
// The library is found by JNA (-Djna.library.path=DIR). Exits 0 when every
// check passed, 1 (with the reason on stderr) otherwise.

import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.system.exitProcess
import uniffi.tsunagu_ffi.*

class Failure(msg: String) : Exception(msg)

fun env(name: String): String = System.getenv(name) ?: throw Failure("$name is not set")

/** Collects events from the SDK's event thread for the main thread. */
class Events : PhoneListener {
    val queue = LinkedBlockingQueue<PhoneEvent>()
    override fun onEvent(event: PhoneEvent) {
        println("event: $event")
        queue.put(event)
    }

    /** The first event `pick` accepts within `seconds`; others are skipped. */
    fun <T> await(what: String, seconds: Long, pick: (PhoneEvent) -> T?): T {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds)
        while (true) {
            val left = deadline - System.nanoTime()
            if (left <= 0) throw Failure("no $what within $seconds s")
            val ev = queue.poll(left, TimeUnit.NANOSECONDS) ?: throw Failure("no $what within $seconds s")
            pick(ev)?.let { return it }
        }
    }
}

fun check(ok: Boolean, msg: String) {
    if (!ok) throw Failure(msg)
}

fun run() {
    val events = Events()
    val phone = Phone()
    try {
        phone.setListener(events)
        val config = AccountConfig(
            server = env("TSUNAGU_SERVER"),
            transport = Transport.Udp,
            user = env("TSUNAGU_USER"),
            password = env("TSUNAGU_PASSWORD"),
            domain = "",
            pnProvider = null,
            pnPrid = null,
            pnParam = null,
        )
        val account = phone.addAccount(config)
        val registered = events.await("registration", 15) { ev ->
            if (ev is PhoneEvent.RegistrationChanged && ev.accountId == account.id()) {
                when (val s = ev.state) {
                    is RegistrationState.Registered -> s
                    is RegistrationState.Failed -> throw Failure("registration failed: ${s.code} ${s.reason}")
                    else -> null
                }
            } else null
        }
        check(registered.expiresSecs > 0u, "registered for ${registered.expiresSecs} s")
        check(account.state() is RegistrationState.Registered, "state() says ${account.state()}")

        // Errors arrive as typed exceptions, not crashes.
        try {
            account.dial("", AudioSpec.Silent)
            throw Failure("dialling nothing was accepted")
        } catch (e: PhoneException.InvalidArgument) {
            println("as expected: ${e.message}")
        }
        try {
            account.answer("no-such-call", AudioSpec.Silent)
            throw Failure("answering an unknown call was accepted")
        } catch (e: PhoneException.NoSuchCall) {
            println("as expected: ${e.message}")
        }

        val call = account.dial(env("TSUNAGU_CALLEE"), AudioSpec.Silent)
        check(call.id().isNotEmpty(), "the call has no id")
        check(!call.isIncoming(), "an outgoing call says it is incoming")
        events.await("connected call", 20) { ev ->
            if (ev is PhoneEvent.CallChanged && ev.callId == call.id()) {
                when (val s = ev.state) {
                    is CallState.Connected -> s
                    is CallState.Ended -> throw Failure("the call ended before it connected: ${s.code} ${s.reason}")
                    else -> null
                }
            } else if (ev is PhoneEvent.MediaFailed) throw Failure("media failed: ${ev.reason}") else null
        }
        println("connected")
        try {
            call.sendDtmf("12x")
            throw Failure("a bad DTMF key was accepted")
        } catch (e: PhoneException.InvalidArgument) {
            println("as expected: ${e.message}")
        }
        call.sendDtmf("1")
        call.hangup()
        val ended = events.await("end of the call", 10) { ev ->
            if (ev is PhoneEvent.CallChanged && ev.callId == call.id()) ev.state as? CallState.Ended else null
        }
        println("ended: ${ended.code} ${ended.reason}")

        account.shutdown()
        events.await("unregistration", 10) { ev ->
            if (ev is PhoneEvent.RegistrationChanged && ev.state is RegistrationState.Unregistered) ev else null
        }
        println("unregistered")
    } finally {
        phone.shutdown()
    }
}

fun main() {
    try {
        run()
    } catch (e: Throwable) {
        System.err.println("FAILED: $e")
        e.printStackTrace()
        exitProcess(1)
    }
    println("kotlin bindings: ok")
    exitProcess(0)
}
