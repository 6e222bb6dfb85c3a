# Prepares a throwaway Redmine for the tests: the REST API on, logins required (so that a wrong
# API key is refused rather than taken for an anonymous visitor), the administrator's API key, a
# project with issues and a "Story points" custom field. Prints what the tests need as JSON.
require "json"

Setting.rest_api_enabled = "1"
Setting.login_required = "1"

admin = User.find_by!(login: "admin")
admin.update_columns(firstname: "Ada", lastname: "Admin", status: User::STATUS_ACTIVE)
key = admin.api_key

tracker = Tracker.first
status = IssueStatus.where(is_closed: false).first
priority = IssuePriority.default || IssuePriority.first

points = IssueCustomField.create!(
  name: "Story points", field_format: "float", is_for_all: true, visible: true, trackers: [tracker]
)
project = Project.create!(name: "Webshop", identifier: "webshop", is_public: false, tracker_ids: [tracker.id])
project.enabled_module_names = %w[issue_tracking time_tracking]

issues = [
  ["Log in with a nickname", 3],
  ["Export the backlog", nil],
  ["Pay by invoice", 8],
].map do |subject, hours|
  Issue.create!(
    project: project, tracker: tracker, status: status, priority: priority, author: admin,
    subject: subject, estimated_hours: hours
  )
end

puts JSON.generate(
  key: key, project: project.identifier, story_points: points.id, issues: issues.map(&:id)
)
