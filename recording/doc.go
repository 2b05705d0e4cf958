// Package recording writes a call's two legs to one stereo file while the
// call runs: the customer on the left channel, the phone on the right.
// Files are Ogg Opus (RFC 7845) or 16-bit PCM WAV, flushed about once a
// second so that a crash loses at most the last seconds.
//
// It knows nothing of SIP, WebRTC, conversations or the store: the gateway
// feeds it 8 kHz PCM from the bridge and gives it the file to write.
package recording
