package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// asynqSystem is Asynq v0.26.0 on the local Redis, in its own logical
// database, which must hold nothing but Asynq keys.
var asynqSystem = &queueSystem{
	name:     "asynq",
	describe: "Asynq v0.26.0 on Redis (own logical database), default settings; Client.EnqueueContext one task per call",
	start:    startAsynq,
}

const asynqTaskType = "bench:noop"

type runningAsynq struct {
	client *asynq.Client
	server *asynq.Server
	redis  *redis.Client
}

func startAsynq(ctx context.Context, cfg *runConfig, worked func(seq int64)) (runningSystem, error) {
	rdb := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, DB: cfg.redisDB})
	if err := clearAsynqKeys(ctx, rdb, cfg.redisDB); err != nil {
		rdb.Close()
		return nil, err
	}

	opt := asynq.RedisClientOpt{Addr: cfg.redisAddr, DB: cfg.redisDB}
	server := asynq.NewServer(opt, asynq.Config{
		Concurrency: cfg.workers,
		LogLevel:    asynq.WarnLevel,
	})
	handler := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		seq, err := strconv.ParseInt(string(t.Payload()), 10, 64)
		if err != nil {
			return fmt.Errorf("payload %q is not a sequence number", t.Payload())
		}
		worked(seq)
		return nil
	})
	if err := server.Start(handler); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("start the asynq server: %w", err)
	}
	return &runningAsynq{client: asynq.NewClient(opt), server: server, redis: rdb}, nil
}

func (r *runningAsynq) insert(ctx context.Context, seq int64) error {
	_, err := r.client.EnqueueContext(ctx, asynq.NewTask(asynqTaskType, strconv.AppendInt(nil, seq, 10)))
	return err
}

func (r *runningAsynq) stop() {
	r.server.Shutdown()
	r.client.Close()
	clearAsynqKeys(context.Background(), r.redis, -1)
	r.redis.Close()
}

// clearAsynqKeys deletes the Asynq keys of the client's database. When db
// is not negative it first checks that the database holds no other keys,
// so a database that something else uses is never touched.
func clearAsynqKeys(ctx context.Context, rdb *redis.Client, db int) error {
	if db >= 0 {
		var cursor uint64
		for {
			keys, next, err := rdb.Scan(ctx, cursor, "*", 1000).Result()
			if err != nil {
				return fmt.Errorf("scan Redis database %d: %w", db, err)
			}
			for _, k := range keys {
				if len(k) < 6 || k[:6] != "asynq:" {
					return fmt.Errorf("Redis database %d contains the key %q, which is not Asynq's; choose an empty database with --redis-db", db, k)
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
	}
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "asynq:*", 1000).Result()
		if err != nil {
			return fmt.Errorf("scan Asynq keys: %w", err)
		}
		if len(keys) > 0 {
			if err := rdb.Del(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("delete Asynq keys: %w", err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}
