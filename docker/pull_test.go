package docker

import (
	"os"
	"strings"
	"testing"
)

// The recordings are the daemon's answers (Docker 20.10, API 1.41) to
// POST /images/create from a registry on 127.0.0.1.
func readRecording(t *testing.T, name string) []PullProgress {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var seen []PullProgress
	if err := readPull(strings.NewReader(string(b)), func(p PullProgress) { seen = append(seen, p) }); err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 {
		t.Fatal("no progress reported")
	}
	return seen
}

func TestAPullOfOneLayerReportsItsBytesThenTheLayerDone(t *testing.T) {
	seen := readRecording(t, "pull-one-layer.jsonl")
	if got := seen[1].String(); got != "36.7 kB of 1.05 MB (0 layers done of 1)" {
		t.Errorf("first download: %q", got)
	}
	last := seen[len(seen)-1]
	if last != (PullProgress{Downloaded: 1050220, Size: 1050220, Layers: 1, Done: 1}) {
		t.Errorf("last: %+v", last)
	}
	if got := last.String(); got != "1.05 MB of 1.05 MB (1 layers done of 1)" {
		t.Errorf("last: %q", got)
	}
}

func TestALayerAlreadyPresentCountsAsDoneAndAddsNoBytes(t *testing.T) {
	seen := readRecording(t, "pull-four-layers-one-present.jsonl")
	if first := seen[0]; first != (PullProgress{Layers: 1, Done: 1}) {
		t.Errorf("first: %+v", first)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].Downloaded < seen[i-1].Downloaded || seen[i].Done < seen[i-1].Done {
			t.Errorf("progress went back: %+v after %+v", seen[i], seen[i-1])
		}
	}
	// A layer whose last "Downloading" was partial is whole at "Download complete".
	want := PullProgress{Downloaded: 401978 + 501823 + 601673, Size: 401978 + 501823 + 601673, Layers: 4, Done: 4}
	if last := seen[len(seen)-1]; last != want {
		t.Errorf("last: %+v, want %+v", last, want)
	}
}

func TestAnErrorInThePullStreamIsReturned(t *testing.T) {
	stream := `{"status":"Pulling from app","id":"1"}
{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}
`
	err := readPull(strings.NewReader(stream), nil)
	if err == nil || !strings.Contains(err.Error(), "manifest unknown") {
		t.Fatalf("got %v", err)
	}
}

func TestHumanBytesKeepsThreeDigits(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1 kB", 45_200_000: "45.2 MB", 120_000_000: "120 MB", 3_456_789_012: "3.46 GB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
