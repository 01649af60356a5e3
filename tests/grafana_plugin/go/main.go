// The Grafana ClickHouse plugin's client, as the plugin opens it, running the probes of
// tests/integration/test_grafana_plugin_reader.py: grafana/clickhouse-datasource v4.14.1 (the
// version docker-compose.yml pins) opens clickhouse-go v2.43.0 with clickhouse.OpenDB (its
// pkg/plugin/driver.go, Connect), pings within the dial timeout, then runs each query through
// database/sql with a context of the data source's query timeout (grafana-plugin-sdk's sqlds),
// from which clickhouse-go derives the max_execution_time it sends (its context.go).
//
// Usage: plugin-client-go -protocol native|http -addr HOST:PORT -user USER -database DB
// [-query-timeout 25] [-dial-timeout 10]; the password comes from CLICKHOUSE_PASSWORD (never on
// the command line). Prints one JSON line per probe: {"probe", "ok", "error", "rows"}.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

type result struct {
	Probe string     `json:"probe"`
	OK    bool       `json:"ok"`
	Error string     `json:"error"`
	Rows  [][]string `json:"rows"`
}

// probes: name -> SQL; each returns string columns (the test reads them as text).
var probes = []struct{ name, sql string }{
	{"select_one", "SELECT toString(1)"},
	{"effective_settings", "SELECT name, value FROM system.settings WHERE name IN " +
		"('readonly', 'max_result_rows', 'max_execution_time', 'max_memory_usage') ORDER BY name"},
	{"too_many_rows", "SELECT toString(number) FROM system.numbers LIMIT 1000001"},
	{"create_table", "CREATE TABLE plugin_probe (x UInt8) ENGINE = Memory"},
}

func main() {
	protocol := flag.String("protocol", "native", "native or http (the data source's protocol)")
	addr := flag.String("addr", "127.0.0.1:9000", "host:port")
	user := flag.String("user", "peakend_reader", "user name")
	database := flag.String("database", "peakend", "default database")
	queryTimeout := flag.Int("query-timeout", 25, "the data source's queryTimeout, seconds")
	dialTimeout := flag.Int("dial-timeout", 10, "the data source's dialTimeout, seconds")
	flag.Parse()

	proto, compression := clickhouse.Native, clickhouse.CompressionLZ4
	if *protocol == "http" {
		proto, compression = clickhouse.HTTP, clickhouse.CompressionGZIP
	}
	db := clickhouse.OpenDB(&clickhouse.Options{
		Addr:        []string{*addr},
		Auth:        clickhouse.Auth{Database: *database, Username: *user, Password: os.Getenv("CLICKHOUSE_PASSWORD")},
		Compression: &clickhouse.Compression{Method: compression},
		DialTimeout: time.Duration(*dialTimeout) * time.Second,
		Protocol:    proto,
		ReadTimeout: time.Duration(*queryTimeout) * time.Second,
		Settings:    clickhouse.Settings{},
	})
	defer db.Close()
	out := json.NewEncoder(os.Stdout)

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*dialTimeout)*time.Second)
	err := db.PingContext(ctx)
	cancel()
	_ = out.Encode(outcome("ping", nil, err))
	if err != nil {
		os.Exit(1)
	}
	for _, p := range probes {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*queryTimeout)*time.Second)
		rows, err := query(ctx, db, p.sql)
		cancel()
		_ = out.Encode(outcome(p.name, rows, err))
	}
}

func outcome(name string, rows [][]string, err error) result {
	if err != nil {
		return result{Probe: name, OK: false, Error: err.Error(), Rows: [][]string{}}
	}
	if rows == nil {
		rows = [][]string{}
	}
	return result{Probe: name, OK: true, Error: "", Rows: rows}
}

func query(ctx context.Context, db *sql.DB, text string) ([][]string, error) {
	rows, err := db.QueryContext(ctx, text)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	columns, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for rows.Next() {
		values := make([]string, len(columns))
		targets := make([]any, len(columns))
		for i := range values {
			targets[i] = &values[i]
		}
		if err := rows.Scan(targets...); err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		if len(out) < 10 { // the rows a probe needs; the rest are only counted by the server
			out = append(out, values)
		}
	}
	return out, rows.Err()
}
