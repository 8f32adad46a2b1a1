// Package httpapi serves Ferry's HTTP API: the QStash v2 routes under /v2,
// a health check and Prometheus metrics. Routing is done on the raw request
// URI, because QStash clients put an unescaped destination URL, with its
// "//", into the path, which net/http's ServeMux would clean and redirect.
package httpapi

import (
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/schedule"
	"github.com/ferryhq/ferry/signature"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// Defaults of Config.
const (
	MaxBodyBytesDefault        = 10 << 20
	DeduplicationWindowDefault = 10 * time.Minute
	DefaultRetriesDefault      = 3
)

// Config configures a Server.
type Config struct {
	// Store persists messages. Required.
	Store store.Store

	// Token is the bearer token every route except /health requires.
	// Required.
	Token string

	// Notify is called after a message is stored, to wake the dispatcher.
	// Optional.
	Notify func()

	// KeysChanged is called with the new keys after a rotation, so the
	// dispatcher signs with the new current key at once. Optional.
	KeysChanged func(store.SigningKeys)

	// MaxBodyBytes bounds request bodies. Defaults to 10 MiB.
	MaxBodyBytes int64

	// DeduplicationWindow is how long a deduplication id is remembered.
	// Defaults to 10 minutes.
	DeduplicationWindow time.Duration

	// DefaultRetries applies to messages without Upstash-Retries. Defaults
	// to 3; set a negative value for zero retries.
	DefaultRetries int

	// Gatherer serves /metrics. Optional; without it /metrics is not found.
	Gatherer prometheus.Gatherer

	// Metrics counts API activity. Optional.
	Metrics *Metrics

	// Logger receives internal errors. Defaults to a discarding logger.
	Logger *slog.Logger

	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time

	// MaxInFlight is the dispatcher's maximum of attempts in flight, which
	// GET /v2/globalParallelism reports as parallelismMax. Optional.
	MaxInFlight int

	// ScheduleTimescale maps real time to the time cron expressions are
	// evaluated in. The zero value is real time, and only tests change it.
	ScheduleTimescale schedule.Timescale
}

// Server is the HTTP handler of the API.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	metrics http.Handler

	// streams ends the job event streams when the server shuts down.
	streams streamStop
}

// NewServer returns a Server. It panics when Store or Token is missing,
// because that is a wiring mistake.
func NewServer(cfg Config) *Server {
	if cfg.Store == nil || cfg.Token == "" {
		panic("httpapi: Config.Store and Config.Token are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = MaxBodyBytesDefault
	}
	if cfg.DeduplicationWindow <= 0 {
		cfg.DeduplicationWindow = DeduplicationWindowDefault
	}
	if cfg.DefaultRetries == 0 {
		cfg.DefaultRetries = DefaultRetriesDefault
	} else if cfg.DefaultRetries < 0 {
		cfg.DefaultRetries = 0
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, logger: cfg.Logger.With("component", "api")}
	if cfg.Gatherer != nil {
		s.metrics = promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})
	}
	return s
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, _, _ := strings.Cut(requestTarget(r), "?")

	if path == "/health" || path == "/healthz" {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	if !s.authorized(r) {
		s.writeError(w, r, ferry.Errorf(ferry.EUNAUTHORIZED,
			"missing or invalid token: send the header Authorization: Bearer <token> (or the query parameter qstash_token)"))
		return
	}

	resource, rest := splitResource(path)
	switch {
	case resource == "metrics" && s.metrics != nil && r.Method == http.MethodGet:
		s.metrics.ServeHTTP(w, r)
	case resource == "v2/publish":
		// A publish without a destination reaches the handler, which
		// rejects it with 400 and the expected form.
		s.only(w, r, http.MethodPost, s.handlePublish)
	case resource == "v2/keys" || resource == "v2/rotate":
		s.routeKeys(w, r, resource, strings.TrimSuffix(rest, "/"))
	case resource == "v2/messages":
		s.routeMessages(w, r, strings.TrimSuffix(rest, "/"))
	case resource == "v2/dlq":
		s.routeDLQ(w, r, strings.TrimSuffix(rest, "/"))
	case resource == "v1" && (rest == "jobs" || strings.HasPrefix(rest, "jobs/")):
		s.routeJobs(w, r, strings.Trim(strings.TrimPrefix(rest, "jobs"), "/"))
	case resource == "v2/enqueue":
		s.only(w, r, http.MethodPost, s.handleEnqueue)
	case resource == "v2/batch" && strings.TrimSuffix(rest, "/") == "":
		s.only(w, r, http.MethodPost, s.handleBatch)
	case resource == "v2/queues":
		s.routeQueues(w, r, strings.TrimSuffix(rest, "/"))
	case resource == "v2/topics":
		s.routeTopics(w, r, strings.TrimSuffix(rest, "/"))
	case resource == "v2/flowcontrol":
		s.routeFlowControl(w, r, strings.TrimSuffix(rest, "/"))
	case resource == "v2/globalparallelism" && strings.TrimSuffix(rest, "/") == "":
		s.only(w, r, http.MethodGet, s.handleGlobalParallelism)
	case resource == "v2/schedules":
		s.routeSchedules(w, r, rest)
	case (resource == "v2/events" || resource == "v2/logs") && strings.TrimSuffix(rest, "/") == "":
		key := strings.TrimPrefix(resource, "v2/")
		s.only(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.handleEvents(w, r, key) })
	default:
		s.writeError(w, r, ferry.Errorf(ferry.ENOTFOUND, "route not found: %s %s", truncate(r.Method), truncate(path)))
	}
}

// routeKeys routes /v2/keys, /v2/keys/rotate and /v2/rotate; the Go SDK
// rotates through the last one.
func (s *Server) routeKeys(w http.ResponseWriter, r *http.Request, resource, rest string) {
	switch {
	case resource == "v2/keys" && rest == "":
		s.only(w, r, http.MethodGet, s.handleKeysGet)
	case (resource == "v2/keys" && rest == "rotate") || (resource == "v2/rotate" && rest == ""):
		s.only(w, r, http.MethodPost, s.handleKeysRotate)
	default:
		s.notFound(w, r)
	}
}

// routeMessages routes /v2/messages and /v2/messages/{id}.
func (s *Server) routeMessages(w http.ResponseWriter, r *http.Request, rest string) {
	if rest == "" {
		s.only(w, r, http.MethodDelete, s.handleMessagesCancel)
		return
	}
	id, err := pathID(rest)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.methods(w, r, map[string]http.HandlerFunc{
		http.MethodGet:    func(w http.ResponseWriter, r *http.Request) { s.handleMessageGet(w, r, id) },
		http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.handleMessageCancel(w, r, id) },
	})
}

// routeDLQ routes /v2/dlq, /v2/dlq/{id}, /v2/dlq/retry and
// /v2/dlq/retry/{id}.
func (s *Server) routeDLQ(w http.ResponseWriter, r *http.Request, rest string) {
	switch {
	case rest == "":
		s.methods(w, r, map[string]http.HandlerFunc{
			http.MethodGet:    s.handleDLQList,
			http.MethodDelete: s.handleDLQDelete,
		})
	case rest == "retry":
		s.only(w, r, http.MethodPost, s.handleDLQRetry)
	case strings.HasPrefix(rest, "retry/"):
		id, err := pathID(strings.TrimPrefix(rest, "retry/"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.only(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) { s.handleDLQRetryOne(w, r, id) })
	default:
		id, err := pathID(rest)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.methods(w, r, map[string]http.HandlerFunc{
			http.MethodGet:    func(w http.ResponseWriter, r *http.Request) { s.handleDLQGet(w, r, id) },
			http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.handleDLQDeleteOne(w, r, id) },
		})
	}
}

// methods runs the handler for the request's method, and responds with 405
// naming the allowed methods otherwise.
func (s *Server) methods(w http.ResponseWriter, r *http.Request, handlers map[string]http.HandlerFunc) {
	if h, ok := handlers[r.Method]; ok {
		h(w, r)
		return
	}
	allowed := make([]string, 0, len(handlers))
	for m := range handlers {
		allowed = append(allowed, m)
	}
	sort.Strings(allowed)
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: "method " + truncate(r.Method) + " not allowed on this route; use " + strings.Join(allowed, " or ")})
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	path, _, _ := strings.Cut(requestTarget(r), "?")
	s.writeError(w, r, ferry.Errorf(ferry.ENOTFOUND, "route not found: %s %s", truncate(r.Method), truncate(path)))
}

// requestTarget returns the path and query of r exactly as the client sent
// them. An absolute-form target ("http://host/v2/..."), which HTTP/1.1
// servers must accept (RFC 9112, section 3.2.2), and a request built
// without a RequestURI both fall back to the parsed URL in its escaped form.
func requestTarget(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	target := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	return target
}

// splitResource returns the lowercased resource of path ("v2/publish" for
// "/v2/Publish/https://x") and what follows it. A trailing slash on a
// collection is ignored.
func splitResource(path string) (resource, rest string) {
	p := strings.TrimPrefix(path, "/")
	first, after, _ := strings.Cut(p, "/")
	first = strings.ToLower(first)
	if first != "v2" {
		return first, after
	}
	second, after, _ := strings.Cut(after, "/")
	return "v2/" + strings.ToLower(second), after
}

// only runs h when the request method is method, and responds with 405 otherwise.
func (s *Server) only(w http.ResponseWriter, r *http.Request, method string, h http.HandlerFunc) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: "method " + truncate(r.Method) + " not allowed on this route; use " + method})
		return
	}
	h(w, r)
}

// authorized compares the request's token with the configured one in
// constant time.
func (s *Server) authorized(r *http.Request) bool {
	token := ""
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, rest, ok := strings.Cut(v, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			token = strings.TrimSpace(rest)
		}
	} else {
		token = r.URL.Query().Get("qstash_token")
	}
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.Token)) == 1
}

func (s *Server) notify() {
	if s.cfg.Notify != nil {
		s.cfg.Notify()
	}
}

// handleKeysGet serves GET /v2/keys.
func (s *Server) handleKeysGet(w http.ResponseWriter, r *http.Request) {
	keys, err := s.cfg.Store.SigningKeysGet(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.Keys{Current: keys.Current, Next: keys.Next})
}

// handleKeysRotate serves POST /v2/keys/rotate and POST /v2/rotate: the
// next key becomes current and a new next key is made.
func (s *Server) handleKeysRotate(w http.ResponseWriter, r *http.Request) {
	next, err := signature.NewKey()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	keys, err := s.cfg.Store.SigningKeysRotate(r.Context(), next)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.logger.Info("signing keys rotated")
	if s.cfg.KeysChanged != nil {
		s.cfg.KeysChanged(keys)
	}
	writeJSON(w, http.StatusOK, wire.Keys{Current: keys.Current, Next: keys.Next})
}

// errorResponse is the QStash error body.
type errorResponse struct {
	Error string `json:"error"`
}

// statusOf maps application error codes to HTTP statuses.
var statusOf = map[string]int{
	ferry.ECONFLICT:      http.StatusConflict,
	ferry.EINTERNAL:      http.StatusInternalServerError,
	ferry.EINVALID:       http.StatusBadRequest,
	ferry.ENOTFOUND:      http.StatusNotFound,
	ferry.ETOOLARGE:      http.StatusRequestEntityTooLarge,
	ferry.EUNAUTHORIZED:  http.StatusUnauthorized,
	ferry.EUNAVAILABLE:   http.StatusServiceUnavailable,
	ferry.EUNPROCESSABLE: http.StatusUnprocessableEntity,
}

// writeError responds with err's status and client-visible message, and
// logs internal errors with the request.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := ferry.ErrorCode(err)
	if code == ferry.EINTERNAL {
		s.logger.Error("request failed", "method", r.Method, "path", truncate(r.URL.Path), "error", err)
	}
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	s.cfg.Metrics.requestFailed(code)
	writeJSON(w, status, errorResponse{Error: ferry.ErrorMessage(err)})
}

// writeJSON writes v as the JSON body. HTML escaping is off, so messages
// such as "Bearer <token>" read the same in a terminal as in the source.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	encoder := json.NewEncoder(w)
	encoder.SetEscapeHTML(false)
	encoder.Encode(v)
}
