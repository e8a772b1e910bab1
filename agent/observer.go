package agent

import "time"

// Observer is told what the agent does, for metrics or an audit trail, and
// changes nothing. Phase receives every finished phase of every slot, of
// every Redeploy (whoever asked: the CLI, the gRPC service) and of every
// recovery; Slot receives the outcome of every slot a Redeploy was asked
// for, once it is known (ResultNotRun included), in config order, before
// Redeploy returns.
//
// Both are called synchronously on the replacement's goroutines, one call
// at a time per Redeploy; they must be quick, must not block, and must be
// safe for concurrent use (the host lock keeps replacements apart, but the
// agent does not promise it to observers).
type Observer interface {
	Phase(Event)
	Slot(SlotReport)
}

// Option configures an Agent at construction.
type Option func(*Agent)

// WithObserver makes o see every phase and slot outcome (see Observer).
func WithObserver(o Observer) Option {
	return func(a *Agent) { a.observer = o }
}

// observed returns events with the observer told of each event first,
// progress reports aside; nil events means the observer only.
func (a *Agent) observed(events func(Event)) func(Event) {
	if events == nil {
		events = func(Event) {}
	}
	if a.observer == nil {
		return events
	}
	o := a.observer
	return func(e Event) {
		if !e.Progress {
			o.Phase(e)
		}
		events(e)
	}
}

// observeReport tells the observer each slot's outcome.
func (a *Agent) observeReport(rep Report) {
	if a.observer == nil {
		return
	}
	for _, s := range rep.Slots {
		a.observer.Slot(s)
	}
}

// observeRecovery reports a recovery done outside a Redeploy (a Redeploy
// reports its own as a PhaseRecover event).
func (a *Agent) observeRecovery(begin time.Time, did string) {
	if a.observer != nil && did != "" {
		a.observer.Phase(Event{Slot: "(journal)", Phase: PhaseRecover, Start: begin, Duration: time.Since(begin), Detail: did})
	}
}
