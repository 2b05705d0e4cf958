// Package test holds Segue's end-to-end tests, behind the e2e build tag:
// they run the real segue binary as a subprocess and drive it with real
// peers (headless Chromium through chromedp, Go HTTP and WebSocket
// clients). Run them with
//
//	go test -tags e2e ./test/
//
// TestMain builds ./cmd/segue once; set SEGUE_E2E_BIN to test a binary
// built elsewhere (a release build, say) instead. Chromium is expected at
// /usr/bin/chromium; with the tag set, its absence fails the tests.
package test
