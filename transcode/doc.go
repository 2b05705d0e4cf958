// Package transcode converts and conditions audio: Opus and G.711 codecs,
// resampling, frame regrouping, jitter buffering, loss concealment and DTMF.
// It knows nothing of signalling (SIP, SDP, ICE) or chat.
package transcode
