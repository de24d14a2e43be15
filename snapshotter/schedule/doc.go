// Package schedule takes snapshot sets on a StatefulSet's snapgate.io/schedule
// (cron, as Kubernetes CronJobs read it; times in UTC unless CRON_TZ= says
// otherwise), through the same engine as the webhook, with reason schedule.
// Each run's set is named after the run, so a retry or a restart never takes
// it twice; a run missed while snapgate was down is taken once when it is back,
// if it is within the starting deadline. Only the elected leader schedules.
package schedule
