// Package command is mission's command line: one file per command, the
// flag groups (each flag and its environment variable declared once) in
// flags.go, the logger and ROLE here. It only parses flags, builds the
// parts' configurations and wires the parts together; everything they do
// lives in the packages below it.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
)

// Main runs the program with the process's arguments and environment and
// returns its exit code.
func Main(version string) int {
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	args := ApplyRole(os.Args, os.Getenv("ROLE"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := New(version, os.Stdout, os.Stderr).RunContext(ctx, args); err != nil {
		fmt.Fprintln(os.Stderr, "mission:", err)
		return 1
	}
	return 0
}

// New builds the application. Commands print results to stdout and logs
// to stderr, so tests can run them in process.
func New(version string, stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "mission",
		Usage:     "process-aware intrusion detection for MQTT networks",
		Version:   version,
		Flags:     logFlags(),
		Writer:    stdout,
		ErrWriter: stderr,
		Commands: []*cli.Command{
			probeCommand(),
			collectCommand(),
			allInOneCommand(),
			queryCommand(),
			mineCommand(),
			detectCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // Main prints the error once
	}
}

// ApplyRole lets one container image run any role: with no subcommand on
// the command line (nothing, or only flags), ROLE (probe, collect,
// collector or all-in-one) picks it.
func ApplyRole(args []string, role string) []string {
	if role == "" || len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		return args
	}
	if len(args) > 1 {
		switch args[1] {
		case "-h", "--help", "-v", "--version":
			return args
		}
	}
	switch strings.ToLower(role) {
	case "collector":
		role = "collect"
	case "allinone", "all_in_one":
		role = "all-in-one"
	}
	return append(append(args[:1:1], role), args[1:]...)
}

// lineageString returns the value of a flag defined on several levels of
// the command line: the innermost level where it was set, else its default.
func lineageString(c *cli.Context, name string) string {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet(name) {
			return ctx.String(name)
		}
	}
	return c.String(name)
}

// parseLevel accepts zerolog's names and the Python logging names the
// original containers used (WARNING, CRITICAL), in any case.
func parseLevel(s string) (zerolog.Level, error) {
	switch s = strings.ToLower(strings.TrimSpace(s)); s {
	case "warning":
		s = "warn"
	case "critical":
		s = "error"
	}
	lvl, err := zerolog.ParseLevel(s)
	if err != nil || lvl == zerolog.NoLevel || s == "" {
		return 0, fmt.Errorf("--%s %q: use debug, info, warn or error", flagLogLevel, s)
	}
	return lvl, nil
}

// newLogger builds the one logger every part of the program gets. The
// console format has colours only when stderr is a terminal.
func newLogger(c *cli.Context) (zerolog.Logger, error) {
	lvl, err := parseLevel(lineageString(c, flagLogLevel))
	if err != nil {
		return zerolog.Logger{}, err
	}
	out := c.App.ErrWriter
	var l zerolog.Logger
	switch lineageString(c, flagLogFormat) {
	case "json":
		l = zerolog.New(out)
	case "console", "":
		l = zerolog.New(zerolog.ConsoleWriter{Out: out, TimeFormat: "15:04:05.000", NoColor: !isTerminal(out)})
	default:
		return zerolog.Logger{}, errors.New("--" + flagLogFormat + ": use console or json")
	}
	return l.Level(lvl).With().Timestamp().Logger(), nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
