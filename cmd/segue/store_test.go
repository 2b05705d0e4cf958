package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestStoreMigrateSQLite: on the embedded store, segue store migrate
// creates the database file and says its schema has no versions.
func TestStoreMigrateSQLite(t *testing.T) {
	path := writeConfig(t, "")
	dir := filepath.Dir(path)
	db := filepath.Join(dir, "data", "segue.db")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc = bytes.Replace(doc, []byte(`dsn: "data/segue.db"`), []byte(`dsn: "`+db+`"`), 1)
	doc = bytes.Replace(doc, []byte(`files_dir: "data/files"`), []byte(`files_dir: "`+filepath.Join(dir, "files")+`"`), 1)
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"store", "migrate", "--config", path})
	if err := root.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if want := "sqlite " + db + ": schema created as it opens (no versions)\n"; out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("no database file: %v", err)
	}
}
