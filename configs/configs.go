// Package configs embeds the documented example configuration that
// `segue config init` writes.
package configs

import _ "embed"

// Example is configs/segue.yaml: every key, its default and a comment.
//
//go:embed segue.yaml
var Example []byte

// DemoHash is the bcrypt hash of the demo agent's password, "segue-demo",
// in Example. The gateway refuses it unless it listens on loopback only;
// `segue config init` replaces it with a generated password's.
const DemoHash = "$2a$10$FW6Xm42.N5crZPw5Yauv9ukiwPMg4MmZTQDfd97b812ZoqVRoTmYq"
