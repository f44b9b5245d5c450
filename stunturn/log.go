package stunturn

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pion's messages go to the Logger at debug level and below, whatever
// level pion gives them: almost all are about one packet or one request
// and a remote client can cause them at will ("No Permission or Channel
// exists" is Info, a failed send to a vanished client is Error), so at
// a higher level they would let anyone flood the server's logs.
const (
	levelPionTrace     = slog.LevelDebug - 8
	levelPionDebug     = slog.LevelDebug - 4
	levelPionInfo      = slog.LevelDebug - 2
	levelPionWarnError = slog.LevelDebug
)

// pionLogs is a pion LoggerFactory writing to slog.
type pionLogs struct{ l *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.l.With("pion", scope)}
}

type pionLogger struct{ l *slog.Logger }

func (p pionLogger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if p.l.Enabled(ctx, level) {
		p.l.Log(ctx, level, fmt.Sprintf(format, args...))
	}
}

func (p pionLogger) Trace(msg string)             { p.logf(levelPionTrace, "%s", msg) }
func (p pionLogger) Tracef(f string, args ...any) { p.logf(levelPionTrace, f, args...) }
func (p pionLogger) Debug(msg string)             { p.logf(levelPionDebug, "%s", msg) }
func (p pionLogger) Debugf(f string, args ...any) { p.logf(levelPionDebug, f, args...) }
func (p pionLogger) Info(msg string)              { p.logf(levelPionInfo, "%s", msg) }
func (p pionLogger) Infof(f string, args ...any)  { p.logf(levelPionInfo, f, args...) }
func (p pionLogger) Warn(msg string)              { p.logf(levelPionWarnError, "%s", msg) }
func (p pionLogger) Warnf(f string, args ...any)  { p.logf(levelPionWarnError, f, args...) }
func (p pionLogger) Error(msg string)             { p.logf(levelPionWarnError, "%s", msg) }
func (p pionLogger) Errorf(f string, args ...any) { p.logf(levelPionWarnError, f, args...) }
