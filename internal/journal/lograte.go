package journal

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logEvery is how often a repeated log message is let through, with the
// count of the ones held back since.
const logEvery = 10 * time.Second

// limitedLog writes a message the first time it is logged, then at most once
// per period, adding "repeated", the number of times it was held back since
// the last line. Messages are told apart by their text only (attributes
// such as the error may differ). Flush writes the held-back counts. Safe
// for concurrent use.
type limitedLog struct {
	log    *slog.Logger
	period time.Duration
	now    func() time.Time

	mu   sync.Mutex
	msgs map[string]*limitedMsg
}

type limitedMsg struct {
	level  slog.Level
	last   time.Time // when a line was last written
	held   int       // messages held back since
	lastAt []any     // attributes of the newest held-back message
}

func newLimitedLog(log *slog.Logger, period time.Duration, now func() time.Time) *limitedLog {
	return &limitedLog{log: log, period: period, now: now, msgs: make(map[string]*limitedMsg)}
}

// Log logs msg at level unless a line with the same msg was written less
// than a period ago; then it counts it.
func (l *limitedLog) Log(level slog.Level, msg string, args ...any) {
	now := l.now()
	l.mu.Lock()
	m := l.msgs[msg]
	if m != nil && now.Sub(m.last) < l.period {
		m.held++
		m.lastAt = args
		l.mu.Unlock()
		return
	}
	held := 0
	if m == nil {
		m = &limitedMsg{}
		l.msgs[msg] = m
	} else {
		held = m.held
	}
	m.level, m.last, m.held, m.lastAt = level, now, 0, nil
	l.mu.Unlock()
	if held > 0 {
		args = append(args[:len(args):len(args)], "repeated", held)
	}
	l.log.Log(context.Background(), level, msg, args...)
}

// Flush writes one summary line per message that has held-back
// repetitions, with the attributes of the newest, and forgets every
// message, so that the next occurrence is written at once.
func (l *limitedLog) Flush() {
	l.mu.Lock()
	msgs := l.msgs
	l.msgs = make(map[string]*limitedMsg)
	l.mu.Unlock()
	for msg, m := range msgs {
		if m.held > 0 {
			args := append(m.lastAt[:len(m.lastAt):len(m.lastAt)], "repeated", m.held)
			l.log.Log(context.Background(), m.level, msg, args...)
		}
	}
}
