<?php
// The lab's queue workers, started as `php worker.php queue:work redis --queue=default
// --processes=2` so that their command lines read like the seeds' `artisan queue:work` under
// supervisor (numprocs): a parent keeps N worker processes running. Each pops jobs with BRPOP
// from the Redis master (found through Sentinel) and counts each processed job. After a
// failover the old master refuses BRPOP (READONLY), and the worker asks Sentinel again.
//
// A job {"runaway": true} never ends and burns a CPU, as a report generated at peak time does
// (seed 002, high CPU): the high-cpu drill queues two. Restarting the workers ends them.
declare(strict_types=1);

$cfg = json_decode((string) file_get_contents((string) getenv('LAB_CONFIG')), true);
if (!is_array($cfg)) {
    fwrite(STDERR, "worker: lab config unreadable\n");
    exit(1);
}

$processes = 1;
foreach ($argv as $a) {
    if (preg_match('/^--processes=(\d+)$/', $a, $m)) {
        $processes = max(1, (int) $m[1]);
    }
}

function master(array $cfg): array {
    $r = $cfg['redis'];
    foreach ($r['sentinels'] as [$host, $port]) {
        try {
            $s = new RedisSentinel(['host' => $host, 'port' => (int) $port, 'connectTimeout' => 0.5]);
            $addr = $s->getMasterAddrByName($r['master_name']);
            if (is_array($addr) && count($addr) === 2) {
                return [$addr[0], (int) $addr[1]];
            }
        } catch (Throwable $e) {
            // Try the next sentinel.
        }
    }
    return [$r['master'][0], (int) $r['master'][1]];
}

function work(array $cfg, int $n): void {
    cli_set_process_title("php artisan queue:work redis --queue=default (opsdeck lab worker1, process $n)");
    $keys = array_values($cfg['queues']);
    // SIGTERM keeps its default action: a job here is one INCR, nothing to finish gracefully.
    while (true) {
        try {
            [$host, $port] = master($cfg);
            $redis = new Redis();
            $redis->connect($host, $port, 1.0);
            $redis->auth($cfg['redis']['password']);
            $redis->setOption(Redis::OPT_READ_TIMEOUT, 3);
            fwrite(STDERR, date('c') . " worker $n: consuming " . implode(',', $keys) . " on $host:$port\n");
            while (true) {
                $job = $redis->brPop($keys, 1);
                if (!is_array($job) || count($job) !== 2) {
                    continue;
                }
                $payload = json_decode((string) $job[1], true);
                if (is_array($payload) && !empty($payload['crash'])) {
                    // A job that takes its worker down (a fatal error in an extension): the
                    // supervisor starts it again, and it takes the next such job.
                    fwrite(STDERR, date('c') . " worker $n: job {$payload['job']} crashed the worker\n");
                    exit(255);
                }
                if (is_array($payload) && !empty($payload['runaway'])) {
                    fwrite(STDERR, date('c') . " worker $n: job {$payload['job']} started\n");
                    $x = 0;
                    while (true) {
                        $x = ($x + 1) % 1000003;
                    }
                }
                $redis->incr('jobs:processed');
            }
        } catch (Throwable $e) {
            fwrite(STDERR, date('c') . " worker $n: " . $e->getMessage() . "\n");
            sleep(1);
        }
    }
}

if ($processes === 1 || !function_exists('pcntl_fork')) {
    work($cfg, 1);
}

// The supervisor: keeps one process per slot, restarts a slot whose process died.
cli_set_process_title('php artisan queue:work redis --queue=default (opsdeck lab worker1, supervisor)');
$slots = [];
while (true) {
    for ($n = 1; $n <= $processes; $n++) {
        if (isset($slots[$n])) {
            continue;
        }
        $pid = pcntl_fork();
        if ($pid === 0) {
            work($cfg, $n);
            exit(0);
        }
        if ($pid > 0) {
            $slots[$n] = $pid;
        }
    }
    $dead = pcntl_wait($status);
    if ($dead > 0) {
        $n = array_search($dead, $slots, true);
        if ($n !== false) {
            unset($slots[$n]);
            fwrite(STDERR, date('c') . " supervisor: worker process $n ($dead) exited; starting it again\n");
            sleep(1);
        }
    }
}
