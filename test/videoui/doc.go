// Package videoui holds the end-to-end tests of video in the browser: a
// customer's widget and an agent's console, each in its own headless
// Chromium, talking through a real segue process; and a benchmark of the
// gateway's CPU for relayed video. They are behind the e2e build tag:
//
//	go test -tags e2e ./test/videoui/
//	go test -tags e2e -run '^$' -bench Relay720p -benchtime 1x ./test/videoui/
//
// TestMain builds ./cmd/segue once (or uses SEGUE_E2E_BIN). Chromium is
// expected at /usr/bin/chromium and baresip on the PATH; their absence
// fails the tests.
package videoui
