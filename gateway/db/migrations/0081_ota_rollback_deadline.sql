-- OTA (adr/0081): a rollback instruction is redelivered only until the device deadline has passed since
-- it was first sent; then the job is rollback_failed and the campaign stops driving it.
alter table ota_campaign_devices add column rollback_sent_at timestamptz;
