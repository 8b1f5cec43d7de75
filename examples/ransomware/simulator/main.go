// Command simulator behaves like ransomware, harmlessly, to test semprop's
// rules and guard: inside one directory it reads each file, writes an
// "encrypted" copy (the content XORed with a keystream from a fixed seed:
// noise to any entropy measure, yet reversible), renames the copy to
// NAME.locked and deletes the original, at a configurable rate.
//
// It refuses to run unless the directory holds a file named
// .ransomware-simulator-ok, so it cannot be pointed at real data by
// mistake, and it never leaves the directory (no symbolic links are
// followed). Each step is printed as one JSON line:
//
//	{"time":"…","file":"a.txt","step":"write|rename|delete","err":"EPERM"}
//
// Usage:
//
//	simulator -dir DIR [-rate 20] [-max 0] [-ext .locked]
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Marker is the file that must exist in the directory.
const Marker = ".ransomware-simulator-ok"

type step struct {
	Time time.Time `json:"time"`
	File string    `json:"file"`
	Step string    `json:"step"`
	Err  string    `json:"err,omitempty"`
}

func main() {
	dir := flag.String("dir", "", "the directory to attack (must contain "+Marker+")")
	rate := flag.Float64("rate", 20, "files per second (0: as fast as possible)")
	maxFiles := flag.Int("max", 0, "stop after this many files (0: all)")
	ext := flag.String("ext", ".locked", "extension of the encrypted files")
	flag.Parse()
	if err := run(*dir, *rate, *maxFiles, *ext); err != nil {
		fmt.Fprintln(os.Stderr, "simulator:", err)
		os.Exit(1)
	}
}

func run(dir string, rate float64, maxFiles int, ext string) error {
	if dir == "" {
		return errors.New("-dir is required")
	}
	if _, err := os.Lstat(filepath.Join(dir, Marker)); err != nil {
		return fmt.Errorf("%s has no %s: refusing to run", dir, Marker)
	}
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && d.Name() != Marker && !strings.HasSuffix(p, ext) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if maxFiles > 0 && len(files) > maxFiles {
		files = files[:maxFiles]
	}
	enc := json.NewEncoder(os.Stdout)
	note := func(file, what string, err error) {
		s := step{Time: time.Now(), File: strings.TrimPrefix(file, dir+"/"), Step: what}
		if err != nil {
			var en syscall.Errno
			if errors.As(err, &en) {
				s.Err = errnoName(en)
			} else {
				s.Err = err.Error()
			}
		}
		enc.Encode(s)
	}
	var every time.Duration
	if rate > 0 {
		every = time.Duration(float64(time.Second) / rate)
	}
	next := time.Now()
	for _, f := range files {
		if every > 0 {
			time.Sleep(time.Until(next))
			next = next.Add(every)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			note(f, "read", err)
			continue
		}
		ks := rand.NewChaCha8([32]byte{'s', 'e', 'm', 'p', 'r', 'o', 'p'})
		key := make([]byte, len(data))
		ks.Read(key)
		for i := range data {
			data[i] ^= key[i]
		}
		tmp := f + ".tmp"
		err = os.WriteFile(tmp, data, 0o644)
		note(f, "write", err)
		if err != nil {
			continue // a real one would go on to the next file
		}
		err = os.Rename(tmp, f+ext)
		note(f, "rename", err)
		if err != nil {
			continue
		}
		note(f, "delete", os.Remove(f))
	}
	return nil
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.EPERM:
		return "EPERM"
	case syscall.EACCES:
		return "EACCES"
	case syscall.ENOENT:
		return "ENOENT"
	}
	return e.Error()
}
