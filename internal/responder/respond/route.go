package respond

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/route"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// How long a request handed to the instance that owns its agent waits for
// the outcome. Slack wants its answer within 3 seconds of the click; an
// API run waits as long as a local run does (the handler's run timeout).
const (
	clickWait   = 2 * time.Second
	verdictWait = 10 * time.Second
)

var _ route.Executor = (*Engine)(nil)

// Locate implements route.Executor: the agent whose state a command needs,
// when this instance holds it.
func (e *Engine) Locate(ctx context.Context, c route.Command) (string, bool) {
	switch {
	case c.Click != nil:
		a := c.Click
		if a.Kind == slackui.Approve || a.Kind == slackui.Deny {
			j, err := e.approvalJob(ctx, a.AnomalyID)
			if err != nil {
				return "", false
			}
			agent := j.Decision.Target.AgentID
			if agent == "" {
				agent = j.Anomaly.AgentID
			}
			return agent, agent != ""
		}
		in, ok := e.inc.get(a.IncidentID)
		return in.AgentID, ok
	case c.FalsePositive != nil:
		in, ok := e.inc.get(c.FalsePositive.Incident)
		return in.AgentID, ok
	case c.Run != nil:
		return c.Run.AgentID, c.Run.AgentID != ""
	}
	return "", false
}

// Execute implements route.Executor: it runs a command another instance
// received, as that instance would have run it had it owned the agent.
func (e *Engine) Execute(ctx context.Context, c route.Command) (json.RawMessage, error) {
	switch {
	case c.Kind == route.KindClick && c.Click != nil:
		return nil, e.OnClick(ctx, *c.Click)
	case c.Kind == route.KindFalsePositive && c.FalsePositive != nil:
		fp := c.FalsePositive
		return nil, e.FalsePositive(ctx, fp.Incident, fp.AnomalyID, fp.Actor)
	case c.Kind == route.KindOutboxRepair && c.OutboxRepair != nil:
		return e.executeRepair(ctx, c)
	case c.Kind == route.KindRun && c.Run != nil:
		res, err := e.Run(ctx, *c.Run)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(res)
		if err != nil {
			return nil, fmt.Errorf("encode the result of run %s: %w", c.ID, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("command %s: unknown kind %q", c.ID, c.Kind)
}

// routeClick is the interaction handler's Route: a click this instance
// cannot run (another owns the agent, or holds the incident or approval
// request it names) goes to the owner through the global table.
func routeClick(r *route.Router) func(context.Context, slackui.Action) (bool, error) {
	return func(ctx context.Context, a slackui.Action) (bool, error) {
		c := route.Command{ID: a.Key, Kind: route.KindClick, Click: &a}
		if r.Local(ctx, c) {
			return false, nil
		}
		wctx, cancel := context.WithTimeout(ctx, clickWait)
		defer cancel()
		got, _, err := r.Forward(wctx, c)
		switch {
		case errors.Is(err, route.ErrPending):
			// Slack gets its 200; the owner posts the click's
			// confirmation in the thread when it runs it.
			return true, nil
		case err != nil:
			return false, err
		}
		return true, got.Err()
	}
}

// routedRunner is the API's Runner with several instances: a run for an
// agent another instance owns runs there.
type routedRunner struct {
	e *Engine
	r *route.Router
}

// Run implements respapi.Runner. When the owner has not answered within
// the handler's run timeout, the answer is the decision with every step
// pending, as for a local run that outlasts it: the run goes on, and the
// same request_id, sent again, answers with its outcome and runs nothing.
func (rr routedRunner) Run(ctx context.Context, req respapi.Request) (respapi.Result, error) {
	if req.AgentID == "" {
		return rr.e.Run(ctx, req) // refuses it
	}
	c := route.Command{ID: "run:" + req.Key + ":" + req.Playbook + ":" + req.AgentID, Kind: route.KindRun, Run: &req}
	if rr.r.Local(ctx, c) {
		return rr.e.Run(ctx, req)
	}
	got, earlier, err := rr.r.Forward(ctx, c)
	if errors.Is(err, route.ErrPending) {
		return rr.e.plan(req)
	}
	if err != nil {
		return respapi.Result{}, err
	}
	if err := got.Err(); err != nil {
		return respapi.Result{}, err
	}
	var res respapi.Result
	if got.State == route.StateDone {
		if err := json.Unmarshal(got.Result, &res); err != nil {
			return respapi.Result{}, fmt.Errorf("decode the result of run %s from %s: %w", c.ID, got.By, err)
		}
	}
	res.Duplicate = res.Duplicate || earlier
	return res, nil
}

// plan is the decision a run makes, without running it.
func (e *Engine) plan(req respapi.Request) (respapi.Result, error) {
	if info, ok := e.agentInfo(req.AgentID); ok {
		req.Agent = info
	}
	d, err := playbooks.Plan(e.o.Set, req.Manual)
	if err != nil {
		return respapi.Result{}, err
	}
	return respapi.Result{Decision: d}, nil
}

// routedVerdicts is the API's Verdicts with several instances.
type routedVerdicts struct {
	e *Engine
	r *route.Router
}

// FalsePositive implements respapi.Verdicts. When the owner has not
// answered within verdictWait, it returns respapi.ErrQueued: the verdict
// runs when the owner gets to it.
func (rv routedVerdicts) FalsePositive(ctx context.Context, incident, anomalyID string, actor audit.Actor) error {
	c := route.Command{ID: "fp:" + incident + ":" + anomalyID, Kind: route.KindFalsePositive,
		FalsePositive: &route.FalsePositive{Incident: incident, AnomalyID: anomalyID, Actor: actor}}
	if rv.r.Local(ctx, c) {
		return rv.e.FalsePositive(ctx, incident, anomalyID, actor)
	}
	wctx, cancel := context.WithTimeout(ctx, verdictWait)
	defer cancel()
	got, _, err := rv.r.Forward(wctx, c)
	switch {
	case errors.Is(err, route.ErrPending):
		return fmt.Errorf("false positive on %s: %w", incident, respapi.ErrQueued)
	case err != nil:
		return err
	}
	return got.Err()
}
