package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ferryhq/ferry/store"
)

// SigningKeysInit implements store.Store.
func (db *DB) SigningKeysInit(ctx context.Context, keys store.SigningKeys) (store.SigningKeys, error) {
	var stored store.SigningKeys
	err := db.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO signing_keys (singleton, current, next) VALUES (1, ?, ?)
			ON CONFLICT (singleton) DO NOTHING`, keys.Current, keys.Next); err != nil {
			return fmt.Errorf("store signing keys: %w", err)
		}
		return tx.QueryRow(`SELECT current, next FROM signing_keys WHERE singleton = 1`).Scan(&stored.Current, &stored.Next)
	})
	return stored, err
}

// SigningKeysSet implements store.Store.
func (db *DB) SigningKeysSet(ctx context.Context, keys store.SigningKeys) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO signing_keys (singleton, current, next) VALUES (1, ?, ?)
			ON CONFLICT (singleton) DO UPDATE SET current = excluded.current, next = excluded.next`,
			keys.Current, keys.Next)
		if err != nil {
			return fmt.Errorf("store signing keys: %w", err)
		}
		return nil
	})
}

// SigningKeysGet implements store.Store.
func (db *DB) SigningKeysGet(ctx context.Context) (store.SigningKeys, error) {
	var keys store.SigningKeys
	err := db.reader.QueryRowContext(ctx, `SELECT current, next FROM signing_keys WHERE singleton = 1`).
		Scan(&keys.Current, &keys.Next)
	if errors.Is(err, sql.ErrNoRows) {
		return keys, store.ErrNotFound
	} else if err != nil {
		return keys, fmt.Errorf("sqlite: get signing keys: %w", err)
	}
	return keys, nil
}
