package gateway

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segue-rtc/segue/store"
)

// officeTypes maps the extensions of accepted office documents to their
// media types. OOXML and ODF files are ZIP archives, legacy Office files
// OLE2 compound files; the sniffed container must match the extension.
var officeTypes = map[string]string{
	".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
	".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
	".odt":  "application/vnd.oasis.opendocument.text",
	".ods":  "application/vnd.oasis.opendocument.spreadsheet",
	".odp":  "application/vnd.oasis.opendocument.presentation",
	".doc":  "application/msword",
	".xls":  "application/vnd.ms-excel",
	".ppt":  "application/vnd.ms-powerpoint",
}

var ole2Magic = []byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}

func isImage(ct string) bool {
	switch ct {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return true
	}
	return false
}

// sniffType decides a file's media type from its first bytes (and, for
// office documents, its extension), or refuses it. The client's declared
// type is never trusted.
// whole says head is the entire file rather than its first bytes.
func sniffType(head []byte, name string, whole bool) (string, error) {
	ct := http.DetectContentType(head)
	base, _, _ := strings.Cut(ct, ";")
	ext := strings.ToLower(filepath.Ext(name))
	switch {
	case isImage(base), base == "application/pdf":
		return base, nil
	case base == "text/plain":
		// UTF-8 text only, with a text file's name: markup such as SVG or
		// HTML also sniffs as text and has no business here.
		if !strings.HasSuffix(ct, "charset=utf-8") || !utf8.Valid(trimPartialRune(head, whole)) {
			return "", errUnsupportedType
		}
		switch ext {
		case ".csv":
			return "text/csv; charset=utf-8", nil
		case ".txt", ".log", ".md", "":
			return "text/plain; charset=utf-8", nil
		}
	case base == "application/zip":
		switch ext {
		case ".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp":
			return officeTypes[ext], nil
		}
	case bytes.HasPrefix(head, ole2Magic):
		switch ext {
		case ".doc", ".xls", ".ppt":
			return officeTypes[ext], nil
		}
	}
	return "", errUnsupportedType
}

// trimPartialRune drops a multi-byte character cut off at the end of a
// prefix of the file (never from a whole file).
func trimPartialRune(b []byte, whole bool) []byte {
	if whole {
		return b
	}
	for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if r, _ := utf8.DecodeRune(b[len(b)-i:]); r == utf8.RuneError {
				return b[:len(b)-i]
			}
			break
		}
	}
	return b
}

var errUnsupportedType = errf(http.StatusUnsupportedMediaType, "unsupported_type",
	"only images (PNG, JPEG, GIF, WebP), PDF, plain text and office documents are accepted")

// checkZip makes sure an office document is a readable archive, so that a
// renamed arbitrary ZIP (or a zip bomb's directory) is refused early.
func checkZip(r io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(r, size)
	if err != nil || len(zr.File) == 0 || len(zr.File) > 10000 {
		return errUnsupportedType
	}
	return nil
}

func (s *Server) uploadFile(w http.ResponseWriter, r *http.Request) error {
	if s.forwardToHolder(w, r, r.PathValue("id")) {
		return nil
	}
	cv, c, who, err := s.authorize(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	if cv == nil || c.State == store.StateEnded {
		return ErrEnded
	}
	// Reading a conversation is not enough to write into it: an agent
	// must hold it (a waiting one in the agent's queue is readable).
	if who.role == store.RoleAgent && c.AgentID != who.agentID {
		return errNotHolder
	}
	max := s.cfg.Store.MaxUploadBytes
	// The body must keep arriving at minTransferRate (httpguard.go); the
	// reply gets as long as the whole body may take, and then some.
	setDeadlines(w, time.Now().Add(transferGrace), time.Now().Add(transferWindow(max)+requestWriteTimeout))
	r.Body = http.MaxBytesReader(w, newRateReader(w, r.Body), max+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		return errf(http.StatusBadRequest, "bad_request", "want multipart/form-data with a file part")
	}
	clientID, kind := "", ""
	for {
		part, err := mr.NextPart()
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return errTooLarge(max)
			}
			if isTimeout(err) {
				return errTooSlow
			}
			return errf(http.StatusBadRequest, "bad_request", "no file part")
		}
		switch part.FormName() {
		case "id":
			b, _ := io.ReadAll(io.LimitReader(part, 65))
			clientID = strings.TrimSpace(string(b))
			if len(clientID) > 64 {
				return errf(http.StatusBadRequest, "bad_request", "id is over 64 characters")
			}
			continue
		case "kind":
			b, _ := io.ReadAll(io.LimitReader(part, 16))
			kind = strings.TrimSpace(string(b))
			if kind != "" && kind != "snapshot" {
				return errf(http.StatusBadRequest, "bad_request", `kind must be "snapshot" or empty`)
			}
			continue
		case "file":
		default:
			continue
		}
		return s.storeUpload(w, r, cv, who, part, clientID, kind)
	}
}

func errTooLarge(max int64) error {
	return errf(http.StatusRequestEntityTooLarge, "too_large", "file over the %d-byte limit", max)
}

func (s *Server) storeUpload(w http.ResponseWriter, r *http.Request, cv *conv, who participant, part io.Reader, clientID, kind string) error {
	ctx := r.Context()
	name := cleanFileName(partFileName(part))
	n, err := s.store.CountFiles(ctx, cv.c.ID)
	if err != nil {
		return err
	}
	if n >= s.cfg.Limits.MaxUploadsPerConversation {
		return errf(http.StatusTooManyRequests, "too_many_files", "this conversation has reached its %d-file limit", s.cfg.Limits.MaxUploadsPerConversation)
	}
	head := make([]byte, 512)
	hn, err := io.ReadFull(part, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge(s.cfg.Store.MaxUploadBytes)
		}
		if isTimeout(err) {
			return errTooSlow
		}
		return errf(http.StatusBadRequest, "bad_request", "upload interrupted")
	}
	if hn == 0 {
		return errf(http.StatusBadRequest, "bad_request", "the file is empty")
	}
	ct, err := sniffType(head[:hn], name, hn < len(head))
	head = head[:hn]
	if err != nil {
		return err
	}
	if kind == "snapshot" && !isImage(ct) {
		return errf(http.StatusUnsupportedMediaType, "unsupported_type", "a snapshot must be an image")
	}
	f := &store.File{ID: newID("f_"), ConversationID: cv.c.ID, Name: name, Type: ct}
	err = s.store.SaveFile(ctx, f, io.MultiReader(bytes.NewReader(head), part), s.cfg.Store.MaxUploadBytes)
	var mbe *http.MaxBytesError
	if errors.Is(err, store.ErrTooLarge) || errors.As(err, &mbe) {
		return errTooLarge(s.cfg.Store.MaxUploadBytes)
	}
	if isTimeout(err) {
		return errTooSlow
	}
	if err != nil {
		return err
	}
	if strings.HasPrefix(ct, "application/vnd.openxmlformats") || strings.HasPrefix(ct, "application/vnd.oasis") {
		rc, err := s.store.OpenFile(f)
		if err != nil {
			return err
		}
		zerr := checkZip(rc.(io.ReaderAt), f.Size)
		rc.Close()
		if zerr != nil {
			return errors.Join(zerr, s.store.DeleteFile(ctx, f))
		}
	}
	if clientID == "" {
		clientID = newID("u_")
	}
	m := &store.Message{ConversationID: cv.c.ID, ID: clientID, Role: who.role, Kind: store.KindFile, File: f}
	cl := &client{role: who.role, agentID: who.agentID}
	s.senderOf(cl, cv, m)
	stored, _, err := s.hub.post(ctx, cv, m)
	if err != nil {
		return err
	}
	s.metrics.uploads.Inc()
	if kind == "snapshot" && stored.Seq > 0 {
		s.hub.event(ctx, cv, "snapshot.taken", stored.SenderName+" took a snapshot", map[string]string{"file": f.ID, "by": who.role})
	}
	return writeJSON(w, http.StatusCreated, map[string]any{"message": toWireMessage(stored)})
}

func partFileName(p io.Reader) string {
	type named interface{ FileName() string }
	if n, ok := p.(named); ok {
		return n.FileName()
	}
	return ""
}

// cleanFileName keeps a display name only: no directories, no control
// characters, bounded length. Files are stored by content id regardless.
func cleanFileName(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' {
			return -1
		}
		return r
	}, name)
	if name == "." || name == "/" || name == "" {
		name = "file"
	}
	return truncate(name, 120)
}

func (s *Server) downloadFile(w http.ResponseWriter, r *http.Request) error {
	now := time.Now()
	setDeadlines(w, now.Add(requestReadTimeout), now.Add(requestWriteTimeout))
	f, err := s.store.File(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if _, _, _, err := s.authorize(r, f.ConversationID); err != nil {
		return err
	}
	rc, err := s.store.OpenFile(f)
	if err != nil {
		return err
	}
	defer rc.Close()
	// A reader that stops reading is cut off once the file is overdue.
	setDeadlines(w, now.Add(requestReadTimeout), now.Add(transferWindow(f.Size)+requestWriteTimeout))
	h := w.Header()
	disp := "attachment"
	if r.URL.Query().Get("inline") == "1" && isImage(f.Type) {
		disp = "inline"
	}
	h.Set("Content-Disposition", mime.FormatMediaType(disp, map[string]string{"filename": f.Name}))
	h.Set("Content-Type", f.Type)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", fileCSP)
	h.Set("Cache-Control", "private, no-store")
	h.Set("Access-Control-Expose-Headers", "Content-Disposition")
	http.ServeContent(w, r, "", f.CreatedAt, rc)
	return nil
}
