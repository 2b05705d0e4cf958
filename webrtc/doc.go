// Package webrtc runs the browser-facing peer connections over pion/webrtc:
// audio as PCM in and out, video forwarded as RTP untouched. It knows
// nothing of SIP or chat.
package webrtc
