// Package dispatch delivers stored messages to their destinations. A
// Dispatcher claims due messages from the store under a lease, sends each
// as a signed HTTP request, and records the outcome: delivered, retry
// later, or failed into the dead-letter queue.
package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/signature"
	"github.com/ferryhq/ferry/store"
)

// Defaults of Config.
const (
	ConcurrencyDefault     = 256
	DefaultTimeoutDefault  = 15 * time.Minute
	LeaseMarginDefault     = time.Minute
	PollIntervalDefault    = time.Second
	MaxResponseBodyDefault = 256 << 10
	ClaimBatchDefault      = 128
)

// UserAgent is sent with every delivery, as QStash does.
const UserAgent = "Upstash-QStash"

// Config configures a Dispatcher. Zero fields take the defaults above.
type Config struct {
	// Store holds the messages. Required.
	Store store.Store

	// SigningKey returns the key that signs each attempt. Required. It is
	// called per attempt, so a rotation takes effect at once.
	SigningKey func() string

	// Owner names this node in leases. Required.
	Owner string

	// Client sends deliveries. Defaults to a client that does not follow
	// redirects, so a 3xx response is a failed attempt.
	Client *http.Client

	// Concurrency is the maximum number of attempts in flight.
	Concurrency int

	// DefaultTimeout is the HTTP deadline of an attempt whose message sets
	// no Upstash-Timeout.
	DefaultTimeout time.Duration

	// LeaseMargin is added to an attempt's timeout to form its lease.
	LeaseMargin time.Duration

	// PollInterval bounds how long the dispatcher sleeps between looks at
	// the store when nothing wakes it.
	PollInterval time.Duration

	// MaxResponseBody is the number of response body bytes kept for events
	// and the dead-letter queue.
	MaxResponseBody int

	// Retry decides the delay between attempts.
	Retry RetryPolicy

	// Metrics receives delivery counts. Optional.
	Metrics *Metrics

	// Jobs records the attempts of job-run messages (messages with a
	// JobID) in place of the Mark methods. Optional; without it, job-run
	// messages are delivered like other messages and their jobs do not
	// advance.
	Jobs JobRuns

	// Logger receives retries, failures and errors. Defaults to a discarding
	// logger.
	Logger *slog.Logger

	// Now returns the current time. Defaults to time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = ConcurrencyDefault
	}
	if c.DefaultTimeout <= 0 {
		c.DefaultTimeout = DefaultTimeoutDefault
	}
	if c.LeaseMargin <= 0 {
		c.LeaseMargin = LeaseMarginDefault
	}
	if c.PollInterval <= 0 {
		c.PollInterval = PollIntervalDefault
	}
	if c.MaxResponseBody <= 0 {
		c.MaxResponseBody = MaxResponseBodyDefault
	}
	if c.Client == nil {
		c.Client = NewHTTPClient()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Store == nil:
		return errors.New("dispatch: Config.Store is required")
	case c.SigningKey == nil:
		return errors.New("dispatch: Config.SigningKey is required")
	case c.Owner == "":
		return errors.New("dispatch: Config.Owner is required")
	}
	return nil
}

// NewHTTPClient returns the client used for deliveries: no redirects
// followed, and a connection pool sized for many parallel deliveries to
// the same host.
func NewHTTPClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 1024
	transport.MaxIdleConnsPerHost = 256
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Dispatcher claims due messages and delivers them.
type Dispatcher struct {
	cfg    Config
	logger *slog.Logger

	wake  chan struct{}
	slots chan struct{} // one token per attempt in flight
	freed chan struct{}
	wg    sync.WaitGroup
}

// New returns a Dispatcher, or an error naming a missing Config field.
func New(cfg Config) (*Dispatcher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Dispatcher{
		cfg:    cfg,
		logger: cfg.Logger.With("component", "dispatcher"),
		wake:   make(chan struct{}, 1),
		slots:  make(chan struct{}, cfg.Concurrency),
		freed:  make(chan struct{}, 1),
	}, nil
}

// Concurrency returns the maximum number of attempts in flight.
func (d *Dispatcher) Concurrency() int {
	return d.cfg.Concurrency
}

// Notify wakes the dispatcher, because a message may have become due
// earlier than the time it planned to look again. It never blocks.
func (d *Dispatcher) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run claims and delivers messages until ctx ends, then waits for the
// attempts in flight to finish. Attempts are not cancelled by ctx: a
// caller that cannot wait abandons them, and their leases expire.
func (d *Dispatcher) Run(ctx context.Context) error {
	// Leases held under this node's name belong to an earlier process of it
	// that stopped without recording their results.
	n, err := d.cfg.Store.MessageReleaseLeases(ctx, d.cfg.Owner, d.cfg.Now())
	if err != nil {
		return fmt.Errorf("dispatch: release leases of %s: %w", d.cfg.Owner, err)
	}
	if n > 0 {
		d.logger.Info("released leases of a previous run", "owner", d.cfg.Owner, "messages", n)
	}

	d.logger.Info("dispatcher started", "owner", d.cfg.Owner, "concurrency", d.cfg.Concurrency)
	defer d.logger.Info("dispatcher stopped", "owner", d.cfg.Owner)

	deliverCtx := context.WithoutCancel(ctx)
	for ctx.Err() == nil {
		more, err := d.claimAndStart(deliverCtx)
		if err != nil {
			if ctx.Err() == nil {
				d.logger.Error("claim failed; retrying after the poll interval", "error", err)
			}
			d.pause(ctx, d.cfg.PollInterval)
			continue
		}
		d.sleep(ctx, more)
	}
	d.wg.Wait()
	return nil
}

// claimAndStart claims as many due messages as there are free slots and
// starts their attempts. It reports whether it filled every slot it asked
// for, meaning more messages may be due right away.
//
// The claim runs under deliverCtx, which a stop does not cancel. A claim
// cancelled mid-write can still commit, and its messages would then stay
// leased without an attempt until the lease expires.
func (d *Dispatcher) claimAndStart(deliverCtx context.Context) (bool, error) {
	free := cap(d.slots) - len(d.slots)
	if free == 0 {
		return false, nil
	}
	limit := min(free, ClaimBatchDefault)

	msgs, err := d.cfg.Store.MessageClaim(deliverCtx, &store.MessageClaimParams{
		Owner:          d.cfg.Owner,
		Limit:          limit,
		Now:            d.cfg.Now(),
		DefaultTimeout: d.cfg.DefaultTimeout,
		LeaseMargin:    d.cfg.LeaseMargin,
	})
	if err != nil {
		return false, err
	}

	for _, m := range msgs {
		d.slots <- struct{}{}
		d.wg.Add(1)
		go func() {
			defer d.release()
			d.attempt(deliverCtx, m)
		}()
	}
	return len(msgs) == limit, nil
}

func (d *Dispatcher) release() {
	<-d.slots
	d.wg.Done()
	select {
	case d.freed <- struct{}{}:
	default:
	}
}

// sleep waits until the next message is due, a wake-up, a freed slot, the
// poll interval, or the end of ctx, whichever comes first.
func (d *Dispatcher) sleep(ctx context.Context, more bool) {
	if more && len(d.slots) < cap(d.slots) {
		return
	}

	wait := d.cfg.PollInterval
	if len(d.slots) < cap(d.slots) {
		if next, ok, err := d.cfg.Store.MessageNextDueAt(ctx); err != nil {
			if ctx.Err() == nil {
				d.logger.Error("reading the next due time failed", "error", err)
			}
		} else if ok {
			wait = min(wait, max(next.Sub(d.cfg.Now()), 0))
		}
	}
	d.pause(ctx, wait)
}

// pause waits for wait, a wake-up, a freed slot or the end of ctx.
func (d *Dispatcher) pause(ctx context.Context, wait time.Duration) {
	if wait <= 0 {
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-d.wake:
	case <-d.freed:
	case <-ctx.Done():
	}
}

// attempt delivers m once and records the outcome.
func (d *Dispatcher) attempt(ctx context.Context, m *ferry.Message) {
	if m.JobID != "" && d.cfg.Jobs != nil {
		d.attemptJobRun(ctx, m)
		return
	}
	start := d.cfg.Now()
	res := d.send(ctx, m)
	d.cfg.Metrics.observeAttempt(res, d.cfg.Now().Sub(start))

	switch {
	case res.ok():
		d.markDelivered(ctx, m, res)
	case res.nonRetryable() || m.Retried >= m.MaxRetries:
		d.markFailed(ctx, m, res)
	default:
		d.markRetry(ctx, m, res)
	}
}

func (d *Dispatcher) markDelivered(ctx context.Context, m *ferry.Message, res *result) {
	now := d.cfg.Now()
	cbs := callbacks(m, res, "", now)
	applied, err := d.cfg.Store.MessageMarkDelivered(ctx, &store.MessageMarkDeliveredParams{
		ID: m.ID, Attempts: m.Attempts, Now: now, ResponseStatus: res.status, Callbacks: cbs,
	})
	d.checkRecorded(m, "delivered", applied, err)
	if applied {
		d.cfg.Metrics.delivered()
		if len(cbs) > 0 {
			d.Notify()
		}
	}
}

func (d *Dispatcher) markRetry(ctx context.Context, m *ferry.Message, res *result) {
	now := d.cfg.Now()
	delay := d.cfg.Retry.Delay(m.Retried, m.RetryDelayExpr, res.header, now)
	next := now.Add(delay)

	applied, err := d.cfg.Store.MessageMarkRetry(ctx, &store.MessageMarkRetryParams{
		ID: m.ID, Attempts: m.Attempts, Now: now, Result: res.attemptResult(), NextAt: next,
		Callbacks: callbacks(m, res, "", now),
	})
	d.checkRecorded(m, "retry", applied, err)
	if applied {
		d.cfg.Metrics.retried()
		d.logger.Info("delivery failed; retry scheduled", "message_id", m.ID, "url", m.URL,
			"retried", m.Retried, "max_retries", m.MaxRetries, "status", res.status, "error", res.errText(),
			"next_attempt_at", next.UTC().Format(time.RFC3339Nano))
	}
	d.Notify()
}

func (d *Dispatcher) markFailed(ctx context.Context, m *ferry.Message, res *result) {
	now := d.cfg.Now()
	dlqID := ferry.NewDLQID()
	_, applied, err := d.cfg.Store.MessageMarkFailed(ctx, &store.MessageMarkFailedParams{
		ID: m.ID, Attempts: m.Attempts, Now: now, Result: res.attemptResult(), DLQID: dlqID,
		Callbacks: callbacks(m, res, dlqID, now),
	})
	d.checkRecorded(m, "failed", applied, err)
	if applied {
		d.cfg.Metrics.failed()
		d.Notify()
		d.logger.Warn("delivery failed for good; message moved to the dead-letter queue", "message_id", m.ID,
			"dlq_id", dlqID, "url", m.URL, "retried", m.Retried, "status", res.status, "error", res.errText(),
			"non_retryable", res.nonRetryable())
	}
}

// checkRecorded logs a transition that could not be recorded. A store error
// leaves the lease to expire, so the message is delivered again; a dropped
// compare-and-set means another claim or a cancel won.
func (d *Dispatcher) checkRecorded(m *ferry.Message, outcome string, applied bool, err error) {
	if err != nil {
		d.logger.Error("recording the attempt failed; the message is delivered again when its lease expires",
			"message_id", m.ID, "attempts", m.Attempts, "outcome", outcome, "error", err)
	} else if !applied {
		d.logger.Warn("attempt result dropped because the message changed meanwhile (lease expired or cancelled)",
			"message_id", m.ID, "attempts", m.Attempts, "outcome", outcome)
	}
}

// result is the outcome of one HTTP attempt.
type result struct {
	status int
	header http.Header
	body   []byte
	err    error

	// truncated reports a response body longer than MaxResponseBody, of
	// which body holds the first MaxResponseBody bytes.
	truncated bool
}

func (r *result) ok() bool { return r.err == nil && r.status >= 200 && r.status < 300 }

// nonRetryable reports a 489 response carrying Upstash-NonRetryable-Error:
// true, which fails the message without further retries.
func (r *result) nonRetryable() bool {
	return r.status == 489 && strings.EqualFold(strings.TrimSpace(r.header.Get("Upstash-NonRetryable-Error")), "true")
}

func (r *result) errText() string {
	switch {
	case r.err != nil:
		return r.err.Error()
	case r.status >= 300 && r.status < 400:
		return fmt.Sprintf("destination answered %d; redirects are not followed", r.status)
	case !r.ok():
		return fmt.Sprintf("destination answered %d", r.status)
	}
	return ""
}

func (r *result) attemptResult() store.AttemptResult {
	return store.AttemptResult{ResponseStatus: r.status, ResponseHeader: r.header, ResponseBody: r.body, Error: r.errText()}
}

// send performs one signed HTTP attempt of m.
func (d *Dispatcher) send(ctx context.Context, m *ferry.Message) *result {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = d.cfg.DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	token, err := signature.Sign(d.cfg.SigningKey(), m.URL, m.Body, d.cfg.Now())
	if err != nil {
		return &result{err: fmt.Errorf("sign request: %w", err)}
	}

	req, err := http.NewRequestWithContext(ctx, m.Method, m.URL, bytes.NewReader(m.Body))
	if err != nil {
		return &result{err: fmt.Errorf("build request: %w", err)}
	}
	for name, values := range m.Header {
		req.Header[name] = values
	}
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("Upstash-Signature", token)
	req.Header.Set("Upstash-Message-Id", m.ID)
	req.Header.Set("Upstash-Retried", strconv.Itoa(m.Retried))
	if m.CallerIP != "" {
		req.Header.Set("Upstash-Caller-Ip", m.CallerIP)
	}
	if m.TopicName != "" {
		req.Header.Set("Upstash-Topic-Name", m.TopicName)
	}
	if m.ScheduleID != "" {
		req.Header.Set("Upstash-Schedule-Id", m.ScheduleID)
	}

	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &result{err: fmt.Errorf("timed out after %s without a response", timeout)}
		}
		return &result{err: fmt.Errorf("request failed: %w", unwrapURLError(err))}
	}
	defer resp.Body.Close()

	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(d.cfg.MaxResponseBody)+1))
	if err != nil {
		d.logger.Debug("reading the response body failed", "message_id", m.ID, "error", err)
	}
	truncated := len(body) > d.cfg.MaxResponseBody
	if truncated {
		body = body[:d.cfg.MaxResponseBody]
	}
	// Drain a little more so the connection can be reused.
	io.CopyN(io.Discard, resp.Body, 64<<10)
	return &result{status: resp.StatusCode, header: resp.Header, body: body, truncated: truncated}
}

// unwrapURLError drops the *url.Error wrapper, which repeats the method
// and URL that events already carry.
func unwrapURLError(err error) error {
	var u interface{ Unwrap() error }
	if errors.As(err, &u) {
		if inner := u.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}
