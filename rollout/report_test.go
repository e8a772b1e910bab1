package rollout

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestProgressWritesOnePlainLinePerHostSlotAndPhase(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf, []string{"host-a:7443"}, []string{"app-1"})
	p.Event(Event{Kind: EventPhase, Batch: 1, Batches: 3, Step: 1, Steps: 2, Slot: "app-1", Host: "host-a:7443",
		Phase: "drain", Duration: 1200 * time.Millisecond, Detail: "scur 0, qcur 0"})
	p.Event(Event{Kind: EventSlotDone, Batch: 1, Batches: 3, Step: 1, Steps: 2, Slot: "app-1", Host: "host-a:7443",
		Result: ResultRolledBack, Duration: 3 * time.Second, Err: "health gate: timed out"})
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := []string{
		"batch 1/3 step 1/2 app-1 host-a:7443 drain 1.2s scur 0, qcur 0",
		"batch 1/3 step 1/2 app-1 host-a:7443 rolled_back 3s FAILED: health gate: timed out",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %q", lines)
	}
	for i := range want {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != want[i] {
			t.Errorf("line %d: %q, want %q", i, got, want[i])
		}
	}
	if strings.Index(lines[0], "1.2s")+4 != strings.Index(lines[1], "3s")+2 {
		t.Errorf("durations are not aligned:\n%s", buf.String())
	}
}

func TestTheFinalTableHasAColumnPerSlotAndTheErrorsBelow(t *testing.T) {
	f := newFleet(t, 3, "a", "b")
	f.host("h2").fail["a"] = true
	res, _ := f.executor().Run(t.Context(), hostNames(3), nil, mustStrategy(t, "2"))
	var buf bytes.Buffer
	WriteTable(&buf, res)
	out := buf.String()
	for _, want := range []string{"HOST  BATCH  RESULT", "A ", "B ", "h1    1      done", "h2    1      failed   rolled_back", "not_run",
		"h3    2      not_run", "h2: failed: health gate timed out", "3 host(s): 1 done, 1 failed, 1 not run, 0 skipped", "stopped: 1 of 3 hosts failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestTheJSONResultReadsBack(t *testing.T) {
	f := newFleet(t, 2, "a")
	res, err := f.executor().Run(t.Context(), hostNames(2), nil, mustStrategy(t, "1"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, res); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Image string `json:"image"`
		Hosts []struct {
			Host  string `json:"host"`
			Slots []struct {
				Result   string `json:"result"`
				Duration int64  `json:"duration_ns"`
			} `json:"slots"`
		} `json:"hosts"`
		Totals Totals `json:"totals"`
		Plan   Plan   `json:"plan"`
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Image != "app:v2" || back.Totals.Done != 2 || back.Hosts[1].Slots[0].Result != ResultReplaced ||
		back.Hosts[1].Slots[0].Duration <= 0 || len(back.Plan.Batches) != 2 {
		t.Fatalf("read back %+v from\n%s", back, buf.String())
	}
}

func TestThePlanShowsBatchesHostsAndSlotOrder(t *testing.T) {
	s := Strategy{Batch: mustSize(t, "50%"), Canary: mustSize(t, "1")}
	p, err := NewPlan(hostNames(5), []string{"app-1", "app-2"}, s)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	WritePlan(&buf, p, s)
	want := `plan: 5 host(s) in 3 batch(es) (batch 50%, canary 1)
slot order in every batch: app-1 -> app-2 (each slot on all the batch's hosts at once, one slot per host at a time)
batch 1/3 (canary): 1 host(s): h1
batch 2/3: 3 host(s): h2 h3 h4
batch 3/3: 1 host(s): h5
`
	if buf.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", buf.String(), want)
	}
}
