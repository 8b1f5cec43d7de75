// Package storebench measures the embedded stores the analytics history
// could have used, on the workload of the analytics package's
// BenchmarkStoreWrite and BenchmarkStoreQueryDay: a 1-minute bucket of
// 10,000 series (100 keys by type, 9,900 by dir), and a query of one day
// at 1 min by type. It is a module of its own so that the daemon does not
// depend on what it measures. Run: cd internal/analytics/storebench &&
// go test -bench . -benchtime 2s
package storebench

import (
	"database/sql"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	_ "modernc.org/sqlite"
)

const (
	nTypes = 100
	nDirs  = 9900
	bucket = 60
)

type item struct {
	dim   int
	key   string
	count int64
	bytes int64
}

func items() []item {
	var out []item
	for i := range nTypes {
		out = append(out, item{0, fmt.Sprintf("type.%d", i), int64(i + 1), int64(i * 100)})
	}
	for i := range nDirs {
		out = append(out, item{3, fmt.Sprintf("/srv/dir%05d", i), int64(i + 1), int64(i * 100)})
	}
	return out
}

func openSQLite(b *testing.B) *sql.DB {
	db, err := sql.Open("sqlite", filepath.Join(b.TempDir(), "a.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE rollup (res INTEGER, dim INTEGER, start INTEGER, key TEXT, count INTEGER, bytes INTEGER,
		PRIMARY KEY (res, dim, start, key)) WITHOUT ROWID`); err != nil {
		b.Fatal(err)
	}
	return db
}

func writeSQLite(b *testing.B, db *sql.DB, start int64, its []item) {
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	st, err := tx.Prepare(`INSERT INTO rollup VALUES (1, ?, ?, ?, ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	for _, it := range its {
		if _, err := st.Exec(it.dim, start, it.key, it.count, it.bytes); err != nil {
			b.Fatal(err)
		}
	}
	st.Close()
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkSQLiteWrite(b *testing.B) {
	db := openSQLite(b)
	defer db.Close()
	its := items()
	start := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		start += bucket
		writeSQLite(b, db, start, its)
	}
}

func BenchmarkSQLiteQueryDay(b *testing.B) {
	db := openSQLite(b)
	defer db.Close()
	its := items()
	for i := range 1440 {
		writeSQLite(b, db, int64(i*bucket), its)
	}
	b.ReportAllocs()
	for b.Loop() {
		rows, err := db.Query(`SELECT start, key, count, bytes FROM rollup WHERE res = 1 AND dim = 0 AND start >= 0 AND start < 86400`)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var start, count, bytes int64
			var key string
			if err := rows.Scan(&start, &key, &count, &bytes); err != nil {
				b.Fatal(err)
			}
			n++
		}
		rows.Close()
		if n != 1440*nTypes {
			b.Fatalf("%d rows", n)
		}
	}
}

// bbolt: one key per (dimension, bucket start), the value the bucket's
// items of that dimension, encoded as the append-only store does.
func encode(its []item, dim int) []byte {
	var v []byte
	for _, it := range its {
		if it.dim != dim {
			continue
		}
		v = binary.AppendUvarint(v, uint64(len(it.key)))
		v = append(v, it.key...)
		v = binary.AppendUvarint(v, uint64(it.count))
		v = binary.AppendUvarint(v, uint64(it.bytes))
	}
	return v
}

func boltKey(dim int, start int64) []byte {
	k := []byte{byte(dim), 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint64(k[1:], uint64(start))
	return k
}

func openBolt(b *testing.B) *bolt.DB {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "a.bolt"), 0o644, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("1m")); return err }); err != nil {
		b.Fatal(err)
	}
	return db
}

func writeBolt(b *testing.B, db *bolt.DB, start int64, its []item) {
	err := db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte("1m"))
		for _, dim := range []int{0, 3} {
			if err := bk.Put(boltKey(dim, start), encode(its, dim)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func BenchmarkBoltWrite(b *testing.B) {
	db := openBolt(b)
	defer db.Close()
	its := items()
	start := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		start += bucket
		writeBolt(b, db, start, its)
	}
}

func BenchmarkBoltQueryDay(b *testing.B) {
	db := openBolt(b)
	defer db.Close()
	its := items()
	for i := range 1440 {
		writeBolt(b, db, int64(i*bucket), its)
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		err := db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket([]byte("1m")).Cursor()
			end := boltKey(0, 86400)
			for k, v := c.Seek(boltKey(0, 0)); k != nil && string(k) < string(end); k, v = c.Next() {
				for len(v) > 0 {
					kl, m := binary.Uvarint(v)
					v = v[m:]
					_ = string(v[:kl])
					v = v[kl:]
					_, m = binary.Uvarint(v)
					v = v[m:]
					_, m = binary.Uvarint(v)
					v = v[m:]
					n++
				}
			}
			return nil
		})
		if err != nil || n != 1440*nTypes {
			b.Fatalf("%d items, %v", n, err)
		}
	}
}
