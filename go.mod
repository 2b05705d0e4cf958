module github.com/segue-rtc/segue

go 1.26.8

require (
	github.com/thesyncim/gopus v0.1.1
	github.com/zaf/g711 v1.4.0
	gopkg.in/hraban/opus.v2 v2.0.0-20230925203106-0188a62cb302
)
