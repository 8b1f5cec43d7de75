package output

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/atomicfile"
)

// FileConfig configures a file output: NDJSON, one CloudEvent (structured
// JSON) a line, fsynced after each batch.
type FileConfig struct {
	// Path is the file written to. A rotated file is renamed to Path with
	// "-<UTC time>" before its extension:
	// events-20260105T101500.000000000Z.ndjson.
	Path string `yaml:"path" json:"path"`
	// MaxBytes rotates the file once it holds this many bytes (0: never).
	MaxBytes int64 `yaml:"max_bytes,omitempty" json:"max_bytes,omitempty"`
	// RotateEvery rotates the file once it is this old (0: never); checked
	// when a batch is written.
	RotateEvery time.Duration `yaml:"rotate_every,omitempty" json:"rotate_every,omitempty"`
	// Compress is "" or "zstd": each batch is then one zstd frame (a file
	// of concatenated frames, which zstd -d reads as one stream; a crash
	// loses at most the frame being written).
	Compress string `yaml:"compress,omitempty" json:"compress,omitempty"`
}

func (c *FileConfig) validate() error {
	if c == nil || c.Path == "" {
		return errors.New("path is required")
	}
	if c.MaxBytes < 0 || c.RotateEvery < 0 {
		return errors.New("max_bytes and rotate_every must not be negative")
	}
	if c.Compress != "" && c.Compress != "zstd" {
		return fmt.Errorf("compress %q: want zstd or nothing", c.Compress)
	}
	return nil
}

type fileSink struct {
	cfg    FileConfig
	f      *os.File
	size   int64
	opened time.Time
	enc    *zstd.Encoder
	buf    []byte
	now    func() time.Time
}

var _ sink = (*fileSink)(nil)

func newFile(c *FileConfig) (*fileSink, error) {
	s := &fileSink{cfg: *c, now: time.Now}
	if c.Compress == "zstd" {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		s.enc = enc
	}
	return s, nil
}

func (s *fileSink) open() error {
	if err := os.MkdirAll(filepath.Dir(s.cfg.Path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(s.cfg.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.size, s.opened = f, st.Size(), s.now()
	if st.Size() > 0 {
		s.opened = st.ModTime() // a file from before a restart keeps its age
	}
	return nil
}

// rotatedName is the name a rotated file gets.
func (s *fileSink) rotatedName(t time.Time) string {
	dir, base := filepath.Split(s.cfg.Path)
	ext := ""
	if i := strings.Index(base, "."); i > 0 {
		base, ext = base[:i], base[i:]
	}
	name := filepath.Join(dir, base+"-"+t.UTC().Format("20060102T150405.000000000Z")+ext)
	return name
}

func (s *fileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		return err
	}
	s.f = nil
	if err := os.Rename(s.cfg.Path, s.rotatedName(s.now())); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(filepath.Dir(s.cfg.Path)); err != nil {
		return err
	}
	return s.open()
}

// Send appends evs as NDJSON (one zstd frame when compressing) and fsyncs.
func (s *fileSink) Send(_ context.Context, evs []*event.Event) error {
	if s.f == nil {
		if err := s.open(); err != nil {
			return fmt.Errorf("file: %w", err)
		}
	}
	if s.size > 0 && ((s.cfg.MaxBytes > 0 && s.size >= s.cfg.MaxBytes) ||
		(s.cfg.RotateEvery > 0 && s.now().Sub(s.opened) >= s.cfg.RotateEvery)) {
		if err := s.rotate(); err != nil {
			return fmt.Errorf("file: rotate: %w", err)
		}
	}
	b := s.buf[:0]
	for _, ev := range evs {
		b = append(ev.AppendJSON(b), '\n')
	}
	s.buf = b
	if s.enc != nil {
		b = s.enc.EncodeAll(b, nil)
	}
	n, err := s.f.Write(b)
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		// Cut what was written of the batch (no partial line stays), and
		// reopen on the next attempt, which writes the batch again whole.
		if n > 0 {
			_ = s.f.Truncate(s.size)
		}
		_ = s.f.Close()
		s.f = nil
		return fmt.Errorf("file: %w", err)
	}
	s.size += int64(n)
	return nil
}

func (s *fileSink) Close() error {
	var err error
	if s.f != nil {
		err = s.f.Close()
		s.f = nil
	}
	if s.enc != nil {
		_ = s.enc.Close()
	}
	return err
}
