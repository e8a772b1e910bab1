// Package atomicfile writes files that survive a crash whole: a reader sees
// the old content or the new one, never a part.
package atomicfile

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// WriteJSON writes v as indented JSON to path: a temporary file in the same
// directory (created if needed), synced, renamed over path, and the
// directory synced, so the rename itself is durable.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return Write(path, append(b, '\n'))
}

// Write writes b to path as WriteJSON does: a temporary file in the same
// directory (created if needed), synced, renamed over path, and the
// directory synced.
func Write(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	return Replace(path, b, nil)
}

// Replace is Write into a directory that must exist; prepare, when not nil,
// runs on the temporary file (mode 0600) before b is written to it, to give
// it its mode and owner: a reader never sees the content with others.
func Replace(path string, b []byte, prepare func(*os.File) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if prepare != nil {
		err = prepare(tmp)
	}
	if err == nil {
		_, err = tmp.Write(b)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes a rename or removal in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
