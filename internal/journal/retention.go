package journal

import (
	"log/slog"
	"os"
	"slices"
	"time"
)

// retentionLoop applies retention after each roll and periodically.
func (j *Journal) retentionLoop() {
	defer j.wg.Done()
	t := time.NewTicker(j.opts.retentionEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-j.retKick:
		case <-j.stop:
			return
		}
		j.enforceRetention()
	}
}

// enforceRetention deletes whole oldest segments (never the active one)
// while the total exceeds RetentionBytes or their newest record is older
// than RetentionAge.
func (j *Journal) enforceRetention() {
	maxBytes, maxAge := j.opts.RetentionBytes, j.opts.RetentionAge
	if maxBytes <= 0 && maxAge <= 0 {
		return
	}
	now := j.opts.now()
	j.segMu.Lock()
	var total int64
	for _, s := range j.segs {
		total += s.size
	}
	k := 0
	for k < len(j.segs)-1 {
		s := j.segs[k]
		if (maxBytes > 0 && total > maxBytes) || (maxAge > 0 && now.Sub(s.modTime) > maxAge) {
			total -= s.size
			k++
			continue
		}
		break
	}
	victims := slices.Clone(j.segs[:k])
	j.segs = slices.Delete(j.segs, 0, k)
	first := j.segs[0].base
	j.segMu.Unlock()
	for _, s := range victims {
		if err := os.Remove(s.path); err != nil {
			j.limited.Log(slog.LevelError, "journal: retention: remove segment", "file", s.path, "err", err)
			continue
		}
		if err := removeIndex(s.path); err != nil {
			j.limited.Log(slog.LevelWarn, "journal: retention: remove index file", "file", s.path, "err", err)
		}
		j.segmentsDeleted.Add(1)
	}
	if len(victims) > 0 {
		j.log.Info("journal: retention deleted segments", "segments", len(victims), "first_seq", first)
	}
}
