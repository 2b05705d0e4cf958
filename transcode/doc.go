// Package transcode converts and conditions audio: Opus and G.711 codecs,
// resampling, frame regrouping, jitter buffering, loss concealment and DTMF.
// It knows nothing of signalling (SIP, SDP, ICE) or chat.
//
// # Writers
//
// Audio is pushed through chains of Writer stages. Each constructor wraps
// the stage after it and returns the writer to feed; String shows the whole
// chain for logs. No stage starts a goroutine: the leg's network read loop
// (and its playout tick) drives the chain. Stages in steady state do not
// allocate per frame. A stage connected to a writer of the wrong rate
// returns an error wrapping ErrRateMismatch; nothing panics on bad input.
//
// The gateway runs Opus at 8 kHz (OpusNarrowbandFmtp), so the voice path
// needs no resampler. From the browser to the desk phone:
//
//	enc, _ := transcode.NewULawEncoder(rtpOut)      // rtpOut: the SIP leg's RTP sender, 8 kHz
//	dec, _ := transcode.NewOpusDecoder(enc)         // decodes browser Opus straight to 8 kHz
//	jb, _ := transcode.NewJitter(transcode.JitterConfig{ClockRate: transcode.OpusClockRate})
//	// read loop: jb.Push(pkt) for every RTP packet received;
//	// every 20 ms: jb.PopTo(dec) decodes, or conceals a loss (with FEC).
//
// And from the desk phone to the browser:
//
//	opus, _ := transcode.NewOpusEncoder(trackOut, 8000, transcode.OpusConfig{})
//	dec, _ := transcode.NewULawDecoder(transcode.Frames(opus, 160)) // any ptime in, 20 ms out
//	jb, _ := transcode.NewJitter(transcode.JitterConfig{ClockRate: 8000})
//
// A Switch between a leg and the gateway lets hold, transfer and escalation
// re-point audio without rebuilding the legs. Resample converts PCM between
// 8, 16, 24 and 48 kHz for paths that do carry 48 kHz PCM.
//
// # Opus implementations
//
// Opus sits behind OpusCodec. GoOpus, pure Go, is the default. Building
// with -tags "libopus nolibopusfile" (cgo, pkg-config and libopus-dev)
// adds LibOpus and makes it the default; both pass the same tests.
//
// An encoder's complexity, in-band FEC and expected loss can change while
// it runs: give the stage an OpusEffortControl (OpusConfig.Control) and
// Set it from any goroutine; the stage applies it before its next frame,
// on the same encoder, so the stream goes on unbroken.
//
// # DTMF
//
// DTMFSender and DTMFReceiver handle RFC 4733 telephone-events; DTMFTone and
// DTMFDetector handle in-band tones for peers without telephone-event.
package transcode
