package logging

import (
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/reconciler/reconciler/internal/progress"
)

// New returns a logger writing to w at level ("debug", "info", "warn" or
// "error"; anything else is info) in format: "console" (colored on a
// terminal), "json", or "auto" (console on a terminal, json otherwise).
// Timestamps are ISO 8601 under "ts".
func New(format, level string, w io.Writer) *zap.Logger {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		lvl = zapcore.InfoLevel
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if format == "console" || format == "auto" && progress.IsTerminal(w) {
		encCfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		if !progress.IsTerminal(w) {
			encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		}
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl))
}
