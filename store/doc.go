// Package store persists conversations, transcripts, files and call records
// behind the Store interface; the default implementation is embedded SQLite.
package store
