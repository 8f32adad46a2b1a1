package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/wire"
)

// jobsPage is the page size of commands that read every page.
const jobsPage = 100

func newJobsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "Create, follow and repair jobs: long-running work that an HTTP endpoint does in runs",
		Long: `A job calls its handler URL in runs until the handler has processed
targetResults results, says it has no more, or maxRuns runs are done.
docs/jobs.md describes the API and the run protocol.`,
	}
	cmd.AddCommand(newJobsCreateCommand(), newJobsListCommand(), newJobsGetCommand(), newJobsRunsCommand(),
		newJobsResultsCommand(), newJobsCancelCommand(), newJobsRetryCommand(), newJobsCompleteCommand(),
		newJobsStuckCommand(), newJobsInspectCommand(), newJobsWatchCommand())
	return cmd
}

func newJobsCreateCommand() *cobra.Command {
	var flags clientFlags
	var req wire.JobCreateRequest
	var input, idempotencyKey string
	var retries int
	cmd := &cobra.Command{
		Use:   "create HANDLER_URL --target N",
		Short: "Create a job whose runs are POSTed to HANDLER_URL",
		Long: `Create a job whose runs are POSTed to HANDLER_URL. Durations use the
QStash syntax: 30s, 5m, 1h30m. Options left out take the server defaults:
50 runs, no continuation delay, backoff factor 1, 1m maximum continuation
delay, 5m run timeout, 1h job timeout, 3 retries per run.`,
		Example: `  ferry jobs create http://127.0.0.1:3000/search --target 200 --input '{"keyword": "san"}'`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			req.URL = args[0]
			if input != "" {
				if !json.Valid([]byte(input)) {
					return fmt.Errorf("invalid --input %q: expected a JSON value, such as '{\"keyword\": \"san\"}'", truncateText(input, 200))
				}
				req.Input = json.RawMessage(input)
			}
			if cmd.Flags().Changed("retries") {
				req.Retries = &retries
			}
			job, created, err := c.JobCreate(cmd.Context(), &req, idempotencyKey)
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), job, func(w io.Writer) {
				if created {
					fmt.Fprintf(w, "created job %s\n", job.ID)
				} else {
					fmt.Fprintf(w, "job %s already exists for this idempotency key\n", job.ID)
				}
				fmt.Fprintf(w, "follow it with: ferry jobs watch %s\n", job.ID)
			})
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&req.TargetResults, "target", 0, "number of results after which the job completes (required)")
	fs.StringVar(&input, "input", "", "JSON value that every run receives as input")
	fs.IntVar(&req.MaxRuns, "max-runs", 0, "maximum number of runs (server default 50)")
	fs.StringVar(&req.ContinuationDelay, "continuation-delay", "", "wait before the second run, such as 2s")
	fs.Float64Var(&req.BackoffFactor, "backoff-factor", 0, "multiplies the continuation delay for each further run")
	fs.StringVar(&req.MaxContinuationDelay, "max-continuation-delay", "", "cap of the continuation delay")
	fs.StringVar(&req.RunTimeout, "run-timeout", "", "HTTP deadline of one delivery of a run")
	fs.StringVar(&req.Timeout, "timeout", "", "time after which the whole job times out")
	fs.IntVar(&retries, "retries", 0, "delivery retries of one run (server default 3)")
	fs.StringVar(&req.RetryDelay, "retry-delay", "", "retry-delay expression in milliseconds, such as '1000 * pow(2, retried)'")
	fs.StringVar(&req.Label, "label", "", "label to filter the job and its run messages by")
	fs.StringVar(&idempotencyKey, "idempotency-key", "", "repeat-safe key: a repeat within 24h returns the first job")
	cmd.MarkFlagRequired("target")
	flags.register(cmd)
	return cmd
}

func newJobsListCommand() *cobra.Command {
	var flags clientFlags
	var opts client.JobListOptions
	var from, to string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			opts.Statuses = splitComma(opts.Statuses)
			opts.Labels = splitComma(opts.Labels)
			if opts.From, err = parseTimeFlag("from", from); err != nil {
				return err
			}
			if opts.To, err = parseTimeFlag("to", to); err != nil {
				return err
			}
			var list []wire.Job
			for limit <= 0 || len(list) < limit {
				opts.Count = jobsPage
				page, err := c.JobList(cmd.Context(), &opts)
				if err != nil {
					return err
				}
				list = append(list, page.Jobs...)
				if page.Cursor == "" {
					break
				}
				opts.Cursor = page.Cursor
			}
			if limit > 0 && len(list) > limit {
				list = list[:limit]
			}
			return flags.print(cmd.OutOrStdout(), list, func(w io.Writer) {
				t := table(w)
				fmt.Fprintln(t, "JOB ID\tSTATUS\tPROGRESS\tRUNS\tLABEL\tCREATED\tREASON")
				for _, j := range list {
					fmt.Fprintf(t, "%s\t%s\t%d/%d\t%d/%d\t%s\t%s\t%s\n", j.ID, j.Status, j.ProcessedResults, j.TargetResults,
						j.ProcessedRuns, j.MaxRuns, dash(j.Label), formatTime(&j.CreatedAt), dash(j.CompletionReason))
				}
				t.Flush()
			})
		},
	}
	cmd.Flags().StringSliceVar(&opts.Statuses, "status", nil, "only jobs in this status: pending, processing, completed, error, timeout or cancelled (repeatable)")
	cmd.Flags().StringSliceVar(&opts.Labels, "label", nil, "only jobs with this label (repeatable)")
	cmd.Flags().StringVar(&from, "from", "", "only jobs created at or after this RFC 3339 time")
	cmd.Flags().StringVar(&to, "to", "", "only jobs created at or before this RFC 3339 time")
	cmd.Flags().IntVar(&limit, "limit", 100, "print at most this many jobs (0: all)")
	flags.register(cmd)
	return cmd
}

func newJobsGetCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "get JOB_ID",
		Short: "Show a job with its current run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			job, err := c.JobGet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), job, func(w io.Writer) { printJob(w, job) })
		},
	}
	flags.register(cmd)
	return cmd
}

// printJob writes the fields of a job, one per line.
func printJob(w io.Writer, j *wire.Job) {
	t := table(w)
	fmt.Fprintf(t, "id\t%s\n", j.ID)
	fmt.Fprintf(t, "status\t%s\n", j.Status)
	if j.CompletionReason != "" {
		fmt.Fprintf(t, "completion reason\t%s\n", j.CompletionReason)
	}
	if j.CompletionNote != "" {
		fmt.Fprintf(t, "note\t%s\n", j.CompletionNote)
	}
	if j.Error != "" {
		fmt.Fprintf(t, "error\t%s\n", j.Error)
	}
	if j.LastResponseStatus != 0 || j.LastResponseBody != "" {
		fmt.Fprintf(t, "last response\t%d %s\n", j.LastResponseStatus, truncateText(j.LastResponseBody, 400))
	}
	fmt.Fprintf(t, "url\t%s\n", j.URL)
	if j.Label != "" {
		fmt.Fprintf(t, "label\t%s\n", j.Label)
	}
	fmt.Fprintf(t, "progress\t%d of %d results (%.1f%%)\n", j.ProcessedResults, j.TargetResults, j.Progress)
	fmt.Fprintf(t, "runs\t%d counted, %d started, at most %d\n", j.ProcessedRuns, j.StartedRuns, j.MaxRuns)
	fmt.Fprintf(t, "stored results\t%d\n", j.StoredResults)
	fmt.Fprintf(t, "created\t%s\n", formatTime(&j.CreatedAt))
	fmt.Fprintf(t, "started\t%s\n", formatTime(j.StartedAt))
	fmt.Fprintf(t, "completed\t%s\n", formatTime(j.CompletedAt))
	fmt.Fprintf(t, "times out\t%s\n", formatTime(&j.TimeoutAt))
	fmt.Fprintf(t, "next run\t%s\n", formatTime(j.NextRunAt))
	if j.RetriedCount > 0 {
		fmt.Fprintf(t, "retried\t%d times\n", j.RetriedCount)
	}
	if r := j.CurrentRun; r != nil {
		fmt.Fprintf(t, "current run\t%d, %s (message %s, %s)\n", r.Run, r.Status, r.MessageID, dash(r.MessageState))
		for _, a := range r.Attempts {
			fmt.Fprintf(t, "  attempt %d\t%s\n", a.Attempt, describeWireAttempt(&a))
		}
	}
	t.Flush()
}

// describeWireAttempt summarizes an attempt in one line.
func describeWireAttempt(a *wire.JobAttempt) string {
	if a.FinishedAt == nil {
		return fmt.Sprintf("started %s, no result yet (Upstash-Retried %d)", formatTime(&a.StartedAt), a.Retried)
	}
	status := "no response"
	if a.Status != 0 {
		status = "status " + strconv.Itoa(a.Status)
	}
	text := fmt.Sprintf("%s %s in %d ms, %s (Upstash-Retried %d)", formatTime(&a.StartedAt), status, a.LatencyMs,
		a.Outcome, a.Retried)
	if a.Error != "" && a.Outcome != "delivered" {
		text += ": " + a.Error
	}
	return text
}

func newJobsRunsCommand() *cobra.Command {
	var flags clientFlags
	var limit int
	cmd := &cobra.Command{
		Use:   "runs JOB_ID",
		Short: "List the runs of a job with their delivery attempts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			var runs []wire.JobRun
			cursor := ""
			for limit <= 0 || len(runs) < limit {
				page, err := c.JobRuns(cmd.Context(), args[0], cursor, jobsPage)
				if err != nil {
					return err
				}
				runs = append(runs, page.Runs...)
				if page.Cursor == "" {
					break
				}
				cursor = page.Cursor
			}
			if limit > 0 && len(runs) > limit {
				runs = runs[:limit]
			}
			return flags.print(cmd.OutOrStdout(), runs, func(w io.Writer) {
				t := table(w)
				fmt.Fprintln(t, "RUN\tSTATUS\tPROCESSED\tRESULTS\tHAS MORE\tATTEMPTS\tLAST ATTEMPT")
				for _, r := range runs {
					last := "-"
					if n := len(r.Attempts); n > 0 {
						last = describeWireAttempt(&r.Attempts[n-1])
					}
					fmt.Fprintf(t, "%d\t%s\t%d\t%d\t%v\t%d\t%s\n", r.Run, r.Status, r.Processed, r.Results, r.HasMore,
						len(r.Attempts), last)
				}
				t.Flush()
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most this many runs (0: all)")
	flags.register(cmd)
	return cmd
}

func newJobsResultsCommand() *cobra.Command {
	var flags clientFlags
	var limit int
	cmd := &cobra.Command{
		Use:   "results JOB_ID",
		Short: "Print the stored results of a job, one JSON item per line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			var results []wire.JobResult
			cursor := ""
			for limit <= 0 || len(results) < limit {
				page, err := c.JobResults(cmd.Context(), args[0], cursor, 1000)
				if err != nil {
					return err
				}
				results = append(results, page.Results...)
				if page.Cursor == "" {
					break
				}
				cursor = page.Cursor
			}
			if limit > 0 && len(results) > limit {
				results = results[:limit]
			}
			return flags.print(cmd.OutOrStdout(), results, func(w io.Writer) {
				for _, r := range results {
					fmt.Fprintf(w, "%s\n", r.Item)
				}
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most this many results (0: all)")
	flags.register(cmd)
	return cmd
}

func newJobsCancelCommand() *cobra.Command {
	var flags clientFlags
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel JOB_ID",
		Short: "Cancel a job and its waiting run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			job, err := c.JobCancel(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), job, func(w io.Writer) {
				fmt.Fprintf(w, "cancelled job %s after %d runs with %d of %d results\n", job.ID, job.ProcessedRuns,
					job.ProcessedResults, job.TargetResults)
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the job is cancelled, kept with the job")
	flags.register(cmd)
	return cmd
}

func newJobsRetryCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "retry JOB_ID",
		Short: "Resume a job in error or timeout, or deliver a stuck run again now",
		Long: `Resume a job in error or timeout after its last counted run, keeping its
counters and cursor and starting its timeout again. On an unfinished job
whose run is in retry backoff, failed outside the job, was cancelled or
lost its lease, deliver that run again now.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			job, err := c.JobRetry(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), job, func(w io.Writer) {
				fmt.Fprintf(w, "job %s resumes at run %d with %d of %d results\n", job.ID, job.ProcessedRuns+1,
					job.ProcessedResults, job.TargetResults)
			})
		},
	}
	flags.register(cmd)
	return cmd
}

func newJobsCompleteCommand() *cobra.Command {
	var flags clientFlags
	var reason string
	cmd := &cobra.Command{
		Use:   "complete JOB_ID --reason TEXT",
		Short: "Complete a job by hand, keeping what it processed so far",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			job, err := c.JobComplete(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), job, func(w io.Writer) {
				fmt.Fprintf(w, "completed job %s by hand with %d of %d results\n", job.ID, job.ProcessedResults, job.TargetResults)
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the job is complete (required)")
	cmd.MarkFlagRequired("reason")
	flags.register(cmd)
	return cmd
}

// diagnoseFlags tune what counts as stuck.
type diagnoseFlags struct {
	noProgressRuns int
	startGrace     time.Duration
}

func (f *diagnoseFlags) register(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.noProgressRuns, "no-progress-runs", 0, "report no progress when this many latest runs processed nothing (server default 5)")
	cmd.Flags().DurationVar(&f.startGrace, "start-grace", 0, "how long a due run may wait for its first delivery (server default 1m)")
}

func (f *diagnoseFlags) options() *client.DiagnoseOptions {
	return &client.DiagnoseOptions{NoProgressRuns: f.noProgressRuns, StartGrace: f.startGrace}
}

func newJobsStuckCommand() *cobra.Command {
	var flags clientFlags
	var diag diagnoseFlags
	cmd := &cobra.Command{
		Use:   "stuck",
		Short: "List unfinished jobs that look stuck, why, and the command that acts on each",
		Long: `List unfinished jobs that look stuck: a run in retry backoff, a run message
in the dead-letter queue, a run in flight past its deadline, no progress in
the latest runs, a timeout that passed without the sweeper acting, or a
job that never started. The server examines at most 1000 unfinished jobs,
newest first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			res, err := c.JobsStuck(cmd.Context(), diag.options())
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				if len(res.Jobs) == 0 {
					fmt.Fprintf(w, "no stuck jobs among %d unfinished jobs\n", res.Scanned)
					return
				}
				for _, s := range res.Jobs {
					fmt.Fprintf(w, "%s  %s  %d/%d results, %d runs\n", s.Job.ID, s.Job.Status, s.Job.ProcessedResults,
						s.Job.TargetResults, s.Job.ProcessedRuns)
					printFindings(w, s.Findings)
				}
			})
		},
	}
	diag.register(cmd)
	flags.register(cmd)
	return cmd
}

// printFindings writes each finding with its command.
func printFindings(w io.Writer, findings []wire.JobFinding) {
	for _, f := range findings {
		fmt.Fprintf(w, "  %s: %s\n", f.Reason, f.Detail)
		fmt.Fprintf(w, "    run: %s\n", f.Command)
	}
}

func newJobsInspectCommand() *cobra.Command {
	var flags clientFlags
	var diag diagnoseFlags
	cmd := &cobra.Command{
		Use:   "inspect JOB_ID",
		Short: "Show a job's timeline of state changes, runs and attempts, and its diagnosis",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			in, err := c.JobInspect(cmd.Context(), args[0], diag.options())
			if err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), in, func(w io.Writer) {
				j := in.Job
				fmt.Fprintf(w, "%s  %s  %d/%d results (%.1f%%), %d runs\n", j.ID, j.Status, j.ProcessedResults,
					j.TargetResults, j.Progress, j.ProcessedRuns)
				if j.Error != "" {
					fmt.Fprintf(w, "error: %s\n", j.Error)
				}
				fmt.Fprintln(w, "\ntimeline:")
				t := table(w)
				for _, e := range in.Timeline {
					fmt.Fprintf(t, "  %s\t%s\t%s\n", e.Time.Format("2006-01-02T15:04:05.000Z"), e.Kind, e.Text)
				}
				t.Flush()
				fmt.Fprintln(w, "\ndiagnosis:")
				if len(in.Findings) == 0 {
					fmt.Fprintln(w, "  nothing looks stuck")
				}
				printFindings(w, in.Findings)
			})
		},
	}
	diag.register(cmd)
	flags.register(cmd)
	return cmd
}

func newJobsWatchCommand() *cobra.Command {
	var flags clientFlags
	cmd := &cobra.Command{
		Use:   "watch JOB_ID",
		Short: "Follow a job until it ends: a progress bar on a terminal, one line per change otherwise",
		Long: `Follow a job until it ends. On a terminal, stderr shows a progress bar of
processed results against the target with the run count and status;
otherwise each change prints one line on stdout (one JSON object with
--json). The command fails when the job ends in error, timeout or
cancelled.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := flags.client(cmd)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var bar *progressbar.ProgressBar
			if !flags.json && term.IsTerminal(int(os.Stderr.Fd())) {
				bar = progressbar.NewOptions(1, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowCount(),
					progressbar.OptionSetPredictTime(false), progressbar.OptionFullWidth())
			}

			var last *wire.Job
			err = c.JobWatch(cmd.Context(), args[0], func(j *wire.Job) error {
				last = j
				switch {
				case flags.json:
					return json.NewEncoder(out).Encode(j)
				case bar != nil:
					bar.ChangeMax(j.TargetResults)
					bar.Describe(fmt.Sprintf("%s · run %d", j.Status, j.ProcessedRuns))
					return bar.Set(min(j.ProcessedResults, j.TargetResults))
				default:
					_, err := fmt.Fprintf(out, "%s %s: %d/%d results (%.1f%%), %d runs\n", time.Now().UTC().Format(time.RFC3339),
						j.Status, j.ProcessedResults, j.TargetResults, j.Progress, j.ProcessedRuns)
					return err
				}
			})
			if bar != nil {
				bar.Finish()
				fmt.Fprintln(os.Stderr)
			}
			if err != nil {
				return err
			}
			if last == nil {
				return errors.New("the server sent no job state")
			}
			if !flags.json {
				fmt.Fprintf(out, "job %s %s", last.ID, last.Status)
				if last.CompletionReason != "" {
					fmt.Fprintf(out, " (%s)", last.CompletionReason)
				}
				fmt.Fprintf(out, ": %d of %d results after %d runs\n", last.ProcessedResults, last.TargetResults, last.ProcessedRuns)
			}
			switch last.Status {
			case "error", "timeout", "cancelled":
				msg := fmt.Sprintf("job %s ended %s", last.ID, last.Status)
				if last.Error != "" {
					msg += ": " + last.Error
				}
				return errors.New(msg + "; see ferry jobs inspect " + last.ID)
			}
			return nil
		},
	}
	flags.register(cmd)
	return cmd
}

// formatTime renders t in RFC 3339 with milliseconds, or "-" for nil.
func formatTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseTimeFlag reads an RFC 3339 time; empty means zero.
func parseTimeFlag(name, v string) (time.Time, error) {
	if strings.TrimSpace(v) == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(v))
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid --%s %q: expected an RFC 3339 time such as 2025-03-14T09:00:00Z", name, v)
	}
	return t, nil
}
