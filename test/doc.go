// Package test holds Segue's end-to-end tests, behind the e2e build tag:
// they run the real segue binary as a subprocess and drive it with real
// peers (headless Chromium through chromedp, SIPp, baresip, coturn, Go
// HTTP and WebSocket clients). The chat and voice tests share a Chromium
// each; a video test gives the customer's widget and the agent's console
// a Chromium process each, with the fake camera. Run them with
//
//	go test -tags e2e ./test/
//
// and the benchmark of the gateway's CPU for relayed video with
//
//	go test -tags e2e -run '^$' -bench Relay720p -benchtime 1x ./test/
//
// TestMain builds ./cmd/segue once; set SEGUE_E2E_BIN to test a binary
// built elsewhere (a release build, say) instead. Chromium is expected at
// /usr/bin/chromium and the other peers on the PATH; with the tag set,
// their absence fails the tests. TestVideoOnThinLinks shapes links with
// tc, in a network namespace it makes for itself (unshare), so it needs
// root, as make test has.
//
// Without the tag, the package's in-process tests run in plain go test:
// pion peer connections stand in for the browsers.
package test
