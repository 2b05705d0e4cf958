package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// fileDir keeps uploaded files' bytes in a directory, each named by the
// hex SHA-256 of its content. Both drivers keep bytes there and only the
// metadata in their database; gateways sharing one database must share
// this directory too (see docs/scaling.md).
type fileDir struct {
	filesDir string
	// syncDir makes a rename in filesDir durable (syncDir below; tests
	// watch it).
	syncDir func(dir string) error
}

func newFileDir(dir string) (fileDir, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fileDir{}, fmt.Errorf("store: %w", err)
	}
	return fileDir{filesDir: dir, syncDir: syncDir}, nil
}

// writeContent streams r into the directory and fills f's size, content
// id and creation time. The bytes go to a temporary file first and are
// renamed to their content id once complete and synced, so a crash never
// leaves a partial file under a real name. It fails with ErrTooLarge past
// max bytes.
func (d fileDir) writeContent(f *File, r io.Reader, max int64) error {
	tmp, err := os.CreateTemp(d.filesDir, ".upload-*")
	if err != nil {
		return fmt.Errorf("store: save file: %w", err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after rename
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, max+1))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: save file: %w", err)
	}
	if n > max {
		return ErrTooLarge
	}
	f.Size = n
	f.ContentID = hex.EncodeToString(h.Sum(nil))
	if f.CreatedAt.IsZero() {
		f.CreatedAt = time.Now().UTC()
	}
	if err := os.Rename(tmp.Name(), d.contentPath(f.ContentID)); err != nil {
		return fmt.Errorf("store: save file: %w", err)
	}
	// The rename lives in the directory: sync it too, or a crash may lose
	// the name of an upload that was acknowledged.
	if err := d.syncDir(d.filesDir); err != nil {
		return fmt.Errorf("store: save file: %w", err)
	}
	return nil
}

// syncDir flushes a directory's entries to disk (fsync(2) on the
// directory, as POSIX asks for a rename to be durable).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

func (d fileDir) contentPath(contentID string) string {
	return filepath.Join(d.filesDir, contentID)
}

// openContent opens a stored file's bytes.
func (d fileDir) openContent(f *File) (io.ReadSeekCloser, error) {
	fh, err := os.Open(d.contentPath(f.ContentID))
	if err != nil {
		return nil, fmt.Errorf("store: open file %s: %w", f.ID, err)
	}
	return fh, nil
}

// removeContent deletes a file's bytes; the caller has checked that no
// other record shares them.
func (d fileDir) removeContent(f *File) error {
	if err := os.Remove(d.contentPath(f.ContentID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: delete file %s: %w", f.ID, err)
	}
	return nil
}
