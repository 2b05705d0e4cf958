// Package web holds the browser side of Segue as embedded static files: the
// customer chat widget (widget.js, a custom element with an open shadow
// root), a demo page that embeds it (index.html) and the agent console
// (console.html). They are plain ES modules and CSS with no build step, and
// they follow the pages' Content-Security-Policy: no inline scripts, styles
// or event handlers.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Files returns the assets with static/ as its root, so that index.html,
// widget.js, widget.css, console.html, console.js and console.css are at the
// top level. It is safe for concurrent use.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// fs.Sub fails only for an invalid directory name; "static" is valid.
		panic(err)
	}
	return sub
}
