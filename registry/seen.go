package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Seen is what a check last found to match the local image of a reference.
// It lets a later check (also after a restart) recognise a new index digest
// whose manifest for the local platform did not change.
type Seen struct {
	// Remote is the digest the tag pointed at: the index digest for
	// multi-platform images.
	Remote string `json:"remote"`
	// Platform is the digest of the local platform's manifest in that index;
	// empty for single-platform images.
	Platform string `json:"platform,omitempty"`
	// Local is the repo digest of the local image that matched.
	Local string `json:"local"`
	// Time is when this was seen.
	Time time.Time `json:"time"`
}

// SeenStore remembers Seen records by reference ("host/repo:tag").
type SeenStore interface {
	// Seen returns the record for ref, and whether there is one.
	Seen(ctx context.Context, ref string) (Seen, bool, error)
	// Remember stores the record for ref.
	Remember(ctx context.Context, ref string, s Seen) error
}

// seenFileName is the file SeenFile keeps its records in.
const seenFileName = "registry-seen.json"

// SeenFile is a SeenStore in one small JSON file, rewritten whole and
// atomically (temporary file, then rename) on every change. It is safe for
// concurrent use within one process.
type SeenFile struct {
	path string

	mu      sync.Mutex
	records map[string]Seen
}

var _ SeenStore = (*SeenFile)(nil)

// OpenSeenFile opens (or starts) the records kept in dir, which must exist.
func OpenSeenFile(dir string) (*SeenFile, error) {
	s := &SeenFile{path: filepath.Join(dir, seenFileName), records: map[string]Seen{}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read seen digests: %w", err)
	}
	if err := json.Unmarshal(data, &s.records); err != nil {
		return nil, fmt.Errorf("read seen digests %s: %w", s.path, err)
	}
	return s, nil
}

// Seen implements SeenStore.
func (s *SeenFile) Seen(_ context.Context, ref string) (Seen, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[ref]
	return r, ok, nil
}

// Remember implements SeenStore.
func (s *SeenFile) Remember(_ context.Context, ref string, r Seen) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.records[ref]
	s.records[ref] = r
	if err := s.write(); err != nil {
		if had {
			s.records[ref] = old
		} else {
			delete(s.records, ref)
		}
		return err
	}
	return nil
}

// write replaces the file with the current records; a crash leaves either
// the old file or the new one, never a torn one.
func (s *SeenFile) write() error {
	data, err := json.MarshalIndent(s.records, "", "  ")
	if err != nil {
		return fmt.Errorf("encode seen digests: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), "."+seenFileName+".*")
	if err != nil {
		return fmt.Errorf("write seen digests: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write seen digests: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write seen digests: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write seen digests: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("write seen digests: %w", err)
	}
	return nil
}

// seenMemory is the SeenStore used when none is given: it forgets on exit.
type seenMemory struct {
	mu      sync.Mutex
	records map[string]Seen
}

func (m *seenMemory) Seen(_ context.Context, ref string) (Seen, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[ref]
	return r, ok, nil
}

func (m *seenMemory) Remember(_ context.Context, ref string, r Seen) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records[ref] = r
	return nil
}
