// Package mediaclock is the gateway's one 20 ms media clock. Every audio
// leg (the SIP side's RTP sessions, the WebRTC side's peers) registers a
// tick function instead of running a goroutine and a timer of its own;
// the clock runs the registered ticks in batches, one goroutine per
// processor, so that a few hundred calls cost a few hundred function calls
// every 20 ms rather than a few hundred timer wake-ups.
//
// The clock keeps media time. When its goroutine was not scheduled for a
// while (a busy machine, a garbage collection), the frames that fell due
// meanwhile are not silently lost: each leg is told how many frames to
// produce now (at most MaxBurst, back to back) and how many it must skip,
// so that it can advance its RTP timestamps over the skipped ones (the
// receiver sees a gap, not compressed time) and count them as frames the
// gateway failed to produce.
//
// It knows nothing of codecs, RTP or signalling; sip and webrtc may both
// import it.
package mediaclock
