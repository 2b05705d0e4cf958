//go:build e2e

package test

import (
	"testing"
	"time"
)

// wideMinDB is the faintest the console may hear the customer's tone:
// Chromium's audio processing (on in the widget) lowers a steady tone, but
// not to the noise.
const wideMinDB = -45

// TestWideConsoleHearsTheCustomerWideband: video straight from the chat
// in Chromium, with the customer's fake microphone playing 6 kHz, above
// the 4 kHz that narrowband audio carries: the console hears it at 6 kHz,
// so the customer's browser sent wideband Opus and the gateway relayed it
// to the console without the 8 kHz bridge. The gateway runs WebRTC
// without a trunk.
func TestWideConsoleHearsTheCustomerWideband(t *testing.T) {
	g := startGateway(t)
	customer, console, _ := startVideoChatMic(t, g, wideHz, "My meter whistles")

	// The camera, straight from the chat: the console joins by itself and
	// plays the customer's audio in its video-audio element.
	customerCamera(customer, console)
	time.Sleep(time.Second) // let the browsers' jitter buffers and encoders settle
	expectHeard(t, "the console", console.elementHeard("video-audio", 2000), wideHz, wideMinDB, 0)
	customer.send("Thanks")
	console.waitMessage("Thanks")

	customerCameraOff(customer, console)
}

// TestWideFullBandAgainAfterTheCall: a call to the desk phone (baresip),
// then the camera on the call's connection; the customer hangs up and the
// video goes on. The gateway then offers that connection again without the
// narrowband hints, and the console hears the customer's 6 kHz tone: the
// widget answered the offer and Chromium's encoder took the full band
// back.
func TestWideFullBandAgainAfterTheCall(t *testing.T) {
	g := startGateway(t, withVoice(toDeskPhone(startBaresipPhone(t))))
	customer, console, _ := startVideoChatMic(t, g, wideHz, "Can we talk, then see?")

	customer.click("voice-start")
	customer.waitCall("connected")
	customerCamera(customer, console)

	customer.click("hangup")
	customer.waitCall("ended")
	time.Sleep(2 * time.Second) // the offer answered, the encoders and jitter buffers settled
	expectHeard(t, "after the call the console", console.elementHeard("video-audio", 2000), wideHz, wideMinDB, 0)

	customerCameraOff(customer, console)
}
