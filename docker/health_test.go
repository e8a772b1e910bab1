package docker

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
)

func inspectWith(state container.State, healthcheck *container.HealthConfig) container.InspectResponse {
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{ID: oldID, State: &state},
		Config:            &container.Config{Healthcheck: healthcheck},
	}
}

func TestHealthVerdictFollowsDockersReport(t *testing.T) {
	check := &container.HealthConfig{Test: []string{"CMD", "/app", "-check"}}
	failing := &container.Health{Status: container.Unhealthy, FailingStreak: 3, Log: []*container.HealthcheckResult{{ExitCode: 1, Output: "check: /health answered 503\n"}}}
	for _, tc := range []struct {
		name     string
		resp     container.InspectResponse
		wantDone bool
		wantErr  error
		wantText string
	}{
		{"starting", inspectWith(container.State{Running: true, Health: &container.Health{Status: container.Starting}}, check), false, nil, ""},
		{"no health report yet", inspectWith(container.State{Running: true}, check), false, nil, ""},
		{"healthy", inspectWith(container.State{Running: true, Health: &container.Health{Status: container.Healthy}}, check), true, nil, ""},
		{"unhealthy", inspectWith(container.State{Running: true, Health: failing}, check), true, ErrUnhealthy, "answered 503"},
		{"running without healthcheck", inspectWith(container.State{Running: true}, nil), true, nil, ""},
		{"running with healthcheck disabled", inspectWith(container.State{Running: true}, &container.HealthConfig{Test: []string{"NONE"}}), true, nil, ""},
		{"exited", inspectWith(container.State{Status: container.StateExited, ExitCode: 2, Health: failing}, check), true, ErrExited, "exit code 2"},
		{"restarting after a crash", inspectWith(container.State{Running: true, Restarting: true, ExitCode: 1}, nil), true, ErrExited, "restarting"},
		{"never started", inspectWith(container.State{Status: container.StateCreated}, nil), true, ErrExited, "never started"},
		{"killed for memory", inspectWith(container.State{Status: container.StateExited, ExitCode: 137, OOMKilled: true}, nil), true, ErrExited, "memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done, err := healthVerdict(tc.resp, "web")
			if done != tc.wantDone || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("healthVerdict = %v, %v; want %v, %v", done, err, tc.wantDone, tc.wantErr)
			}
			if err != nil && (!strings.Contains(err.Error(), tc.wantText) || !strings.Contains(err.Error(), "web")) {
				t.Errorf("error %q should name the container and say %q", err, tc.wantText)
			}
		})
	}
}

func TestHealthCommandIsWhatDockerRuns(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *container.Config
		want []string
	}{
		{"CMD", &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/app", "-check"}}}, []string{"/app", "-check"}},
		{"CMD-SHELL", &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"CMD-SHELL", "curl -f localhost/ || exit 1"}}},
			[]string{"/bin/sh", "-c", "curl -f localhost/ || exit 1"}},
		{"CMD-SHELL under SHELL", &container.Config{Shell: []string{"/bin/bash", "-o", "pipefail", "-c"}, Healthcheck: &container.HealthConfig{Test: []string{"CMD-SHELL", "true"}}},
			[]string{"/bin/bash", "-o", "pipefail", "-c", "true"}},
		{"NONE", &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"NONE"}}}, nil},
		{"no healthcheck", &container.Config{}, nil},
		{"an empty test", &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"CMD"}}}, nil},
		{"an unknown form", &container.Config{Healthcheck: &container.HealthConfig{Test: []string{"EXEC", "x"}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := healthCommand(tc.cfg); !slices.Equal(got, tc.want) {
				t.Fatalf("healthCommand = %q, want %q", got, tc.want)
			}
		})
	}
}
