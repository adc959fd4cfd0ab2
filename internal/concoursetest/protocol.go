package concoursetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Bounds on what a worker sends. Concourse's worker JSON is a few KiB
// (its resource types dominate); anything near the limit is not a worker.
const (
	MaxWorkerJSON = 64 << 10 // bytes of worker JSON on a command's stdin
	maxCommand    = 1 << 10  // bytes of an exec request's command line
	maxTags       = 64
	maxField      = 1 << 10 // bytes of a name, tag, team or address
)

// Worker is the part of Concourse's atc.Worker the stand-in reads; other
// fields (resource types, counts, certs path) are accepted and ignored.
type Worker struct {
	Name            string   `json:"name"`
	Platform        string   `json:"platform"`
	Tags            []string `json:"tags"`
	Team            string   `json:"team"`
	Version         string   `json:"version"`
	StartTime       int64    `json:"start_time"`
	Ephemeral       bool     `json:"ephemeral"`
	GardenAddr      string   `json:"addr"`
	BaggageclaimURL string   `json:"baggageclaim_url"`
	State           string   `json:"state,omitempty"`
}

// ParseWorker reads one worker JSON object from r, at most MaxWorkerJSON
// bytes, and checks that its name and tags can be logged and compared: a
// name is what the TSA's event lines carry, so it may hold no spaces or
// control characters.
func ParseWorker(r io.Reader) (Worker, error) {
	var w Worker
	buf, err := io.ReadAll(io.LimitReader(r, MaxWorkerJSON+1))
	if err != nil {
		return w, fmt.Errorf("reading worker JSON: %w", err)
	}
	if len(buf) > MaxWorkerJSON {
		return w, fmt.Errorf("worker JSON is larger than %d bytes", MaxWorkerJSON)
	}
	dec := json.NewDecoder(bytes.NewReader(buf))
	if err := dec.Decode(&w); err != nil {
		return w, fmt.Errorf("worker JSON: %w", err)
	}
	if dec.More() {
		return w, errors.New("worker JSON: more than one value")
	}
	if err := checkToken("name", w.Name, true); err != nil {
		return w, err
	}
	if len(w.Tags) > maxTags {
		return w, fmt.Errorf("worker JSON: %d tags, at most %d", len(w.Tags), maxTags)
	}
	for _, t := range w.Tags {
		if err := checkToken("tag", t, true); err != nil {
			return w, err
		}
	}
	for _, f := range []struct{ what, v string }{{"team", w.Team}, {"platform", w.Platform}, {"version", w.Version},
		{"addr", w.GardenAddr}, {"baggageclaim_url", w.BaggageclaimURL}, {"state", w.State}} {
		if err := checkToken(f.what, f.v, false); err != nil {
			return w, err
		}
	}
	return w, nil
}

// checkToken refuses a value that is too long or that would break a log
// line: spaces, control characters, invalid UTF-8.
func checkToken(what, v string, required bool) error {
	switch {
	case v == "" && required:
		return fmt.Errorf("worker JSON: no %s", what)
	case len(v) > maxField:
		return fmt.Errorf("worker JSON: %s longer than %d bytes", what, maxField)
	}
	for _, c := range v { // invalid UTF-8 ranges as U+FFFD
		if c <= ' ' || c == 0x7f || c == '\uFFFD' {
			return fmt.Errorf("worker JSON: %s %q has a space, control character or invalid UTF-8", what, v)
		}
	}
	return nil
}

// Command is a TSA command: the name of an exec request and its flags.
type Command struct {
	Name string
	Args []string
}

// Commands the TSA knows, as `concourse worker` and `concourse
// retire-worker`/`land-worker` send them.
const (
	ForwardWorker    = "forward-worker"
	LandWorker       = "land-worker"
	RetireWorker     = "retire-worker"
	DeleteWorker     = "delete-worker"
	ReportContainers = "report-containers"
	ReportVolumes    = "report-volumes"
	SweepContainers  = "sweep-containers"
	SweepVolumes     = "sweep-volumes"
)

// ParseCommand splits an exec request's command line on spaces (the TSA's
// commands take only flags and addresses) and checks the command is one
// the TSA knows.
func ParseCommand(line string) (Command, error) {
	if len(line) > maxCommand {
		return Command{}, fmt.Errorf("command longer than %d bytes", maxCommand)
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return Command{}, errors.New("empty command")
	}
	switch f[0] {
	case ForwardWorker, LandWorker, RetireWorker, DeleteWorker, ReportContainers, ReportVolumes, SweepContainers, SweepVolumes:
	default:
		return Command{}, fmt.Errorf("unknown command %q", truncate(f[0]))
	}
	return Command{Name: f[0], Args: f[1:]}, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
