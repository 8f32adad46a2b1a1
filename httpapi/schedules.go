package httpapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/publish"
	"github.com/ferryhq/ferry/schedule"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// schedulesPrefix is the path prefix of the schedule routes. A create puts
// the destination after it.
const schedulesPrefix = "/v2/schedules/"

// MaxScheduleIDBytes is the longest Upstash-Schedule-Id accepted.
const MaxScheduleIDBytes = 256

// scheduleIDPattern matches the custom schedule ids Ferry accepts: letters,
// digits, hyphens, underscores and periods.
var scheduleIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// routeSchedules routes the schedule routes. rest is the raw path after
// /v2/schedules/, untrimmed, because it may hold a destination.
func (s *Server) routeSchedules(w http.ResponseWriter, r *http.Request, rest string) {
	trimmed := strings.TrimSuffix(rest, "/")
	segments := strings.Split(trimmed, "/")
	action := len(segments) == 2 && (segments[1] == "pause" || segments[1] == "resume")

	switch {
	case r.Method == http.MethodPost && !action:
		// A POST without a destination reaches the handler, which rejects
		// it with 400 and the expected form.
		s.handleScheduleCreate(w, r)
	case trimmed == "":
		s.only(w, r, http.MethodGet, s.handleSchedulesList)
	case action:
		id, err := pathID(segments[0])
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		paused := segments[1] == "pause"
		handle := func(w http.ResponseWriter, r *http.Request) { s.handleSchedulePause(w, r, id, paused) }
		s.methods(w, r, map[string]http.HandlerFunc{http.MethodPatch: handle, http.MethodPost: handle})
	case len(segments) == 1:
		id, err := pathID(segments[0])
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.methods(w, r, map[string]http.HandlerFunc{
			http.MethodGet:    func(w http.ResponseWriter, r *http.Request) { s.handleScheduleGet(w, r, id) },
			http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.handleScheduleDelete(w, r, id) },
		})
	default:
		s.notFound(w, r)
	}
}

// handleScheduleCreate serves POST /v2/schedules/{destination}. An
// existing schedule with the Upstash-Schedule-Id of the request is
// replaced as a whole.
func (s *Server) handleScheduleCreate(w http.ResponseWriter, r *http.Request) {
	target := requestTarget(r)
	path, _, _ := strings.Cut(target, "?")
	if len(path) <= len(schedulesPrefix) {
		s.writeError(w, r, ferry.Errorf(ferry.EINVALID,
			"a non-empty destination must be provided: create a schedule with POST /v2/schedules/https://your.app/path"))
		return
	}
	if name := path[len(schedulesPrefix):]; urlGroupName.MatchString(name) {
		s.writeError(w, r, ferry.Errorf(ferry.ENOTFOUND,
			"topic %s not found: schedules to URL groups are not supported yet; use an http:// or https:// URL", truncate(name)))
		return
	}
	dest, err := parseDestination(target, schedulesPrefix)
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	now := s.cfg.Now()
	sc, err := s.buildSchedule(r, dest, body, now)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.cfg.Store.ScheduleUpsert(r.Context(), sc); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.ScheduleCreateResponse{ScheduleID: sc.ID})
}

// buildSchedule validates the schedule headers and the message settings
// and returns the schedule to store.
func (s *Server) buildSchedule(r *http.Request, dest *destination, body []byte, now time.Time) (*ferry.Schedule, error) {
	src := publish.Source{Header: r.Header, Query: dest.Config}

	expr, ok := src.Get("Upstash-Cron")
	if !ok {
		return nil, ferry.Errorf(ferry.EINVALID, `missing Upstash-Cron header: set a cron expression such as "*/5 * * * *"`)
	}
	c, err := schedule.ParseCron(expr)
	if err != nil {
		return nil, ferry.Errorf(ferry.EINVALID, "invalid Upstash-Cron header %q: %v", publish.Truncate(expr), err)
	}

	id := ferry.NewScheduleID()
	if v, ok := src.Get("Upstash-Schedule-Id"); ok {
		if len(v) > MaxScheduleIDBytes || !scheduleIDPattern.MatchString(v) {
			return nil, publish.InvalidHeader("Upstash-Schedule-Id", v,
				"1 to 256 letters, digits, hyphens (-), underscores (_) and periods (.)")
		}
		id = v
	}

	// NOTE: the queue is only stored on the triggered messages. Upstash-Delay
	// is accepted with it, which an enqueue rejects, and the
	// Upstash-Flow-Control-* headers are not stored on schedules.
	queue := ""
	if v, ok := src.Get("Upstash-Queue-Name"); ok {
		if !urlGroupName.MatchString(v) {
			return nil, publish.InvalidHeader("Upstash-Queue-Name", v, "letters, digits, hyphens (-), underscores (_) and periods (.)")
		}
		queue = v
	}

	if _, ok := src.Get("Upstash-Not-Before"); ok {
		return nil, ferry.Errorf(ferry.EINVALID,
			"the Upstash-Not-Before header is not supported on schedules: every tick sends its message at the tick time plus Upstash-Delay")
	}

	// The message settings are validated as on a publish. The delay is what
	// Upstash-Delay added to now.
	m, err := s.buildMessage(r, dest, body, now)
	if err != nil {
		return nil, err
	}

	return &ferry.Schedule{
		ID:                    id,
		Cron:                  expr,
		Destination:           m.URL,
		Method:                m.Method,
		Header:                m.Header,
		Body:                  m.Body,
		Retries:               m.MaxRetries,
		Delay:                 m.NotBefore.Sub(now),
		Timeout:               m.Timeout,
		RetryDelayExpr:        m.RetryDelayExpr,
		Callback:              m.Callback,
		FailureCallback:       m.FailureCallback,
		CallbackHeader:        m.CallbackHeader,
		FailureCallbackHeader: m.FailureCallbackHeader,
		Labels:                m.Labels,
		QueueName:             queue,
		CallerIP:              m.CallerIP,
		CreatedAt:             now,
		NextFireAt:            s.cfg.ScheduleTimescale.Next(c, now),
	}, nil
}

// handleSchedulesList serves GET /v2/schedules.
func (s *Server) handleSchedulesList(w http.ResponseWriter, r *http.Request) {
	list, err := s.cfg.Store.ScheduleList(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]wire.Schedule, 0, len(list))
	for _, sc := range list {
		states, err := s.lastScheduleStates(r.Context(), sc)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out = append(out, wire.NewSchedule(sc, states))
	}
	writeJSON(w, http.StatusOK, out)
}

// handleScheduleGet serves GET /v2/schedules/{id}.
func (s *Server) handleScheduleGet(w http.ResponseWriter, r *http.Request, id string) {
	sc, err := s.cfg.Store.ScheduleGet(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, scheduleNotFound(id))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	states, err := s.lastScheduleStates(r.Context(), sc)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.NewSchedule(sc, states))
}

// handleScheduleDelete serves DELETE /v2/schedules/{id}. Deleting a
// schedule that does not exist succeeds too, so a retried delete does not
// fail. Messages already triggered stay.
func (s *Server) handleScheduleDelete(w http.ResponseWriter, r *http.Request, id string) {
	if _, err := s.cfg.Store.ScheduleDelete(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// handleSchedulePause serves PATCH and POST /v2/schedules/{id}/pause and
// /v2/schedules/{id}/resume. Both are idempotent. A resumed schedule next
// fires at the first tick after now, so ticks that passed while it was
// paused do not fire.
func (s *Server) handleSchedulePause(w http.ResponseWriter, r *http.Request, id string, paused bool) {
	now := s.cfg.Now()
	err := s.cfg.Store.ScheduleSetPaused(r.Context(), &store.ScheduleSetPausedParams{
		ID:     id,
		Paused: paused,
		Next: func(sc *ferry.Schedule) time.Time {
			c, err := schedule.ParseCron(sc.Cron)
			if err != nil {
				return time.Time{}
			}
			return s.cfg.ScheduleTimescale.Next(c, now)
		},
	})
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, scheduleNotFound(id))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// lastScheduleStates returns the state of each message of the schedule's
// last trigger. A message that retention removed is looked up by its
// newest event, and one without events is left out.
func (s *Server) lastScheduleStates(ctx context.Context, sc *ferry.Schedule) (map[string]string, error) {
	states := make(map[string]string, len(sc.LastMessageIDs))
	for _, id := range sc.LastMessageIDs {
		m, err := s.cfg.Store.MessageGet(ctx, id)
		if err == nil {
			states[id] = wire.ScheduleState(m.State)
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}

		events, err := s.cfg.Store.EventList(ctx, &store.EventListParams{MessageID: id, NewestFirst: true, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(events) > 0 {
			states[id] = wire.ScheduleState(events[0].State)
		}
	}
	return states, nil
}

func scheduleNotFound(id string) error {
	return ferry.Errorf(ferry.ENOTFOUND, "schedule %s not found", truncate(id))
}
