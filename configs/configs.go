// Package configs embeds the documented example configuration that
// `segue config init` writes.
package configs

import _ "embed"

// Example is configs/segue.yaml: every key, its default and a comment.
//
//go:embed segue.yaml
var Example []byte
