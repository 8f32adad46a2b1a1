package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/ferryhq/ferry/store"
)

// SigningKeysInit implements store.Store. When nodes start together, the
// first insert to commit wins: the others wait for it on the primary key,
// insert nothing, and read its keys.
func (db *DB) SigningKeysInit(ctx context.Context, keys store.SigningKeys) (store.SigningKeys, error) {
	var stored store.SigningKeys
	err := db.inTx(ctx, "initialize signing keys", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO signing_keys (singleton, current, next) VALUES (1, $1, $2)
			ON CONFLICT (singleton) DO NOTHING`, keys.Current, keys.Next); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT current, next FROM signing_keys WHERE singleton = 1`).
			Scan(&stored.Current, &stored.Next)
	})
	return stored, err
}

// SigningKeysSet implements store.Store.
func (db *DB) SigningKeysSet(ctx context.Context, keys store.SigningKeys) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO signing_keys (singleton, current, next) VALUES (1, $1, $2)
		ON CONFLICT (singleton) DO UPDATE SET current = excluded.current, next = excluded.next`,
		keys.Current, keys.Next)
	if err != nil {
		return wrapError("store signing keys", err)
	}
	return nil
}

// SigningKeysGet implements store.Store.
func (db *DB) SigningKeysGet(ctx context.Context) (store.SigningKeys, error) {
	var keys store.SigningKeys
	err := db.pool.QueryRow(ctx, `SELECT current, next FROM signing_keys WHERE singleton = 1`).
		Scan(&keys.Current, &keys.Next)
	if errors.Is(err, pgx.ErrNoRows) {
		return keys, store.ErrNotFound
	} else if err != nil {
		return keys, wrapError("get signing keys", err)
	}
	return keys, nil
}
