<?php
// The connection-exhaustion drill: open connections as the application user until the server
// answers "Too many connections" (1040), then hold them idle. Killing them (KILL, or stopping
// this process) is the runbook's fix.
declare(strict_types=1);

$cfg = json_decode((string) file_get_contents((string) getenv('LAB_CONFIG')), true);
cli_set_process_title('opsdeck-lab drill connection-exhaustion (idle sleepers on db1)');
mysqli_report(MYSQLI_REPORT_OFF);
$d = $cfg['db'];
$held = [];
for ($i = 0; $i < 1000; $i++) {
    $m = mysqli_init();
    $m->options(MYSQLI_OPT_CONNECT_TIMEOUT, 2);
    if (!@$m->real_connect($d['host'], $d['user'], $d['password'], $d['database'], (int) $d['port'])) {
        fwrite(STDOUT, "holding " . count($held) . " connections; next one got {$m->connect_errno} {$m->connect_error}\n");
        break;
    }
    $held[] = $m;
}
fflush(STDOUT);
// LAB_RECONNECT=1: a leak that comes back, as an application whose pool reopens what is killed
// (the remedy then cannot hold).
if (getenv('LAB_RECONNECT') === '1') {
    while (true) {
        usleep(200000);
        foreach ($held as $i => $m) {
            if (!@$m->ping()) {
                $n = mysqli_init();
                $n->options(MYSQLI_OPT_CONNECT_TIMEOUT, 2);
                if (@$n->real_connect($d['host'], $d['user'], $d['password'], $d['database'], (int) $d['port'])) {
                    $held[$i] = $n;
                }
            }
        }
    }
}
while (true) {
    sleep(3600);
}
