package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// profileServer saves, with -server-cpu-profile, a 20 s CPU profile of the
// API server taken 10 s from now, as PREFIX-phase.pprof. The channel gets
// its error once it is done (at once without the flag).
func (b *bench) profileServer(ctx context.Context, phase string) <-chan error {
	done := make(chan error, 1)
	if b.o.serverProfile == "" {
		done <- nil
		return done
	}
	go func() {
		select {
		case <-ctx.Done():
			done <- ctx.Err()
			return
		case <-time.After(10 * time.Second):
		}
		raw, err := b.raw.Get().AbsPath("/debug/pprof/profile").Param("seconds", "20").DoRaw(ctx)
		if err != nil {
			done <- fmt.Errorf("profile the API server: %w", err)
			return
		}
		path := b.o.serverProfile + "-" + phase + ".pprof"
		step("saved the API server's CPU profile of the %s to %s", phase, path)
		done <- os.WriteFile(path, raw, 0o644)
	}()
	return done
}

// saveProfile saves one of the operator's pprof profiles.
func saveProfile(ctx context.Context, port int, profile, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/%s", port, profile), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	step("saved the operator's %s profile to %s", profile, path)
	return os.WriteFile(path, raw, 0o644)
}
